"""Node-local volumes of PersistentVolumeClaims: their names and labels, and which ones to delete.

A claim's volume is a named Docker volume on the node where its first user was placed. It is
labelled with the claim (``namespace/name``) and the node, so the node finds it again after any
restart, and publishes the claims it holds in its status record. It outlives containers,
rollouts and daemon restarts; only deleting the claim's document from the repository deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gitops.identity import LABEL, MANAGED, ReplicaId, WorkloadKey
from gitops.model import ManifestSet, VolumeRelease, Workload
from gitops.placement import Assignment, NodeInfo, place
from gitops.status import NodeStatus

CLAIM = LABEL + "claim"


def claim_id(namespace: str, claim: str) -> str:
    """``namespace/name``: how labels and status records name a claim."""
    return f"{namespace}/{claim}"


def claim_volume(namespace: str, claim: str, node: str) -> str:
    """Name of the Docker volume behind a claim on ``node`` (the suffix keeps nodes sharing an engine apart)."""
    return f"gitops.claim.{namespace}.{claim}_{node}"


def claim_labels(namespace: str, claim: str, node: str) -> dict[str, str]:
    """The labels of a claim's volume; no pod labels, so removing a pod's emptyDirs never matches it."""
    return {MANAGED: "true", LABEL + "node": node, CLAIM: claim_id(namespace, claim)}


def held_filters(node: str) -> list[str]:
    """Label filters matching every claim volume on ``node``."""
    return [f"{MANAGED}=true", f"{LABEL}node={node}", CLAIM]


def claim_filters(node: str, claim: str) -> list[str]:
    """Label filters matching the volume of one claim (``namespace/name``) on ``node``."""
    return [*held_filters(node)[:2], f"{CLAIM}={claim}"]


def held(volumes: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The claims (``namespace/name``) whose volumes are in ``volumes`` (name -> labels), sorted."""
    return sorted({labels[CLAIM] for labels in volumes.values() if labels.get(CLAIM)})


def deleted(claims: list[str], mset: ManifestSet) -> list[str]:
    """Claims held here whose document is gone from the revision: their volumes are deleted.

    Nothing counts as gone while a file of the revision is unreadable (it may hold the claim),
    and a claim whose document is invalid is kept: a typo must never delete data.
    """
    if mset.unreadable_files:
        return []
    kept = {claim_id(c.namespace, c.name) for c in mset.claims}
    for key in mset.invalid_keys:
        namespace, _, rest = key.partition("/")
        kind, _, name = rest.partition("/")
        if kind == "PersistentVolumeClaim":
            kept.add(claim_id(namespace, name))
    return [c for c in claims if c not in kept]


# A node label only placement's inputs carry: the node holding a claim's volume has it, and its users select it.
PIN = "claim.gitops.io/"


@dataclass(frozen=True)
class Pinned:
    """Placement with every user of a claim pinned to the node holding the claim's volume."""

    assignment: Assignment
    # Replicas whose claim's volume is on a node that is down: (workload key, replica, why); never placed elsewhere.
    lost: list[tuple[WorkloadKey, int, str]]


def holders(reports: Mapping[str, NodeStatus], releases: Iterable[VolumeRelease]) -> dict[str, str]:
    """Claim (``namespace/name``) -> the node whose record says it holds the claim's volume, live or not.

    A volume a VolumeRelease names no longer counts. Were two nodes still to hold one claim, the
    first by name wins on every node alike.
    """
    released = {(claim_id(r.namespace, r.claim), node) for r in releases for node in r.nodes}
    out: dict[str, str] = {}
    for node in sorted(reports):
        for claim in reports[node].volumes or ():
            if (claim, node) not in released:
                out.setdefault(claim, node)
    return out


def place_pinned(
    workloads: Sequence[Workload], nodes: Sequence[NodeInfo], previous: Mapping[ReplicaId, str], held: Mapping[str, str]
) -> Pinned:
    """``place`` with claim users pinned to the holder of each claim's volume (``held``: claim -> node).

    A claim no node holds yet goes where placement puts its first user (by replica id), and its
    other users follow, so one claim never gets two volumes. Users of a claim whose holder is
    down are not placed at all: they would start on an empty volume.
    """
    users = {w.key: [claim_id(w.namespace, c) for c in w.pod.claims()] for w in workloads if w.pod.claims()}
    if not users:
        return Pinned(place(workloads, nodes, previous), [])
    assignment = place(*_pinned(workloads, nodes, users, held), previous)
    chosen = dict(held)
    for rid, node in sorted(assignment.owners().items()):
        for claim in users.get(rid.key, ()):
            chosen.setdefault(claim, node)
    if chosen != held:
        assignment = place(*_pinned(workloads, nodes, users, chosen), previous)
    live = {n.name for n in nodes}
    why: dict[WorkloadKey, str] = {}
    for key, claims in users.items():
        down = [(c, chosen[c]) for c in claims if c in chosen and chosen[c] not in live]
        if down:
            claim, node = down[0]
            why[key] = (
                f"the volume of PersistentVolumeClaim {claim} is on node {node}, which is down; restore its data "
                f"on another node or accept an empty volume, then: gitops volume release {claim} --from {node}"
            )
    lost = [(k, i, why[k]) for k, i, _ in assignment.unschedulable if k in why]
    kept = [u for u in assignment.unschedulable if u[0] not in why]
    return Pinned(assignment.model_copy(update={"unschedulable": kept}), lost)


def _pinned(
    workloads: Sequence[Workload],
    nodes: Sequence[NodeInfo],
    users: Mapping[WorkloadKey, list[str]],
    held: Mapping[str, str],
) -> tuple[list[Workload], list[NodeInfo]]:
    pins: dict[str, dict[str, str]] = {}
    for claim, node in held.items():
        pins.setdefault(node, {})[_pin_label(claim)] = "held"
    pinned_nodes = [
        n.model_copy(update={"labels": {**n.labels, **pins[n.name]}}) if n.name in pins else n for n in nodes
    ]
    pinned_workloads = []
    for w in workloads:
        selector = {_pin_label(c): "held" for c in users.get(w.key, ()) if c in held}
        pinned_workloads.append(
            w.model_copy(update={"node_selector": {**w.node_selector, **selector}}) if selector else w
        )
    return pinned_workloads, pinned_nodes


def _pin_label(claim: str) -> str:
    return PIN + claim.replace("/", ".")
