"""Node-local volumes of PersistentVolumeClaims: their names and labels, and which ones to delete.

A claim's volume is a named Docker volume on the node where its first user was placed. It is
labelled with the claim (``namespace/name``) and the node, so the node finds it again after any
restart, and publishes the claims it holds in its status record. It outlives containers,
rollouts and daemon restarts; only deleting the claim's document from the repository deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from gitops.identity import LABEL, MANAGED, ReplicaId, WorkloadKey
from gitops.model import ManifestSet, StatefulSpec, VolumeRelease, Workload
from gitops.placement import Assignment, NodeInfo, place
from gitops.status import NodeStatus

CLAIM = LABEL + "claim"
# Claims of a StatefulSet's volumeClaimTemplates: the owner's key, the ordinal, and the retention policy at creation.
OWNER = LABEL + "claim-owner"
ORDINAL = LABEL + "claim-ordinal"
DELETE_WHEN = LABEL + "claim-delete-when"


def nfs_options(server: str, path: str, read_only: bool) -> dict[str, str]:
    """Options of Docker's local driver that mount the NFS export ``server:path``."""
    return {"type": "nfs", "o": f"addr={server},{'ro' if read_only else 'rw'}", "device": f":{path}"}


def claim_id(namespace: str, claim: str) -> str:
    """``namespace/name``: how labels and status records name a claim."""
    return f"{namespace}/{claim}"


def claim_volume(namespace: str, claim: str, node: str) -> str:
    """Name of the Docker volume behind a claim on ``node`` (the suffix keeps nodes sharing an engine apart)."""
    return f"gitops.claim.{namespace}.{claim}_{node}"


def claim_labels(namespace: str, claim: str, node: str) -> dict[str, str]:
    """The labels of a claim's volume; no pod labels, so removing a pod's emptyDirs never matches it."""
    return {MANAGED: "true", LABEL + "node": node, CLAIM: claim_id(namespace, claim)}


def replica_claim(template: str, rid: ReplicaId) -> str:
    """The claim one replica of a StatefulSet gets from a template: ``<template>-<statefulset>-<ordinal>``."""
    return f"{template}-{rid.key.name}-{rid.replica}"


def template_claim_labels(
    namespace: str, claim: str, node: str, rid: ReplicaId, stateful: StatefulSpec | None
) -> dict[str, str]:
    """Labels of a template claim's volume: its owner and ordinal, and when the retention policy deletes it."""
    when = (
        []
        if stateful is None
        else [w for w, on in (("deleted", stateful.delete_when_deleted), ("scaled", stateful.delete_when_scaled)) if on]
    )
    return {
        **claim_labels(namespace, claim, node),
        OWNER: str(rid.key),
        ORDINAL: str(rid.replica),
        DELETE_WHEN: ",".join(when),
    }


def held_filters(node: str) -> list[str]:
    """Label filters matching every claim volume on ``node``."""
    return [f"{MANAGED}=true", f"{LABEL}node={node}", CLAIM]


def claim_filters(node: str, claim: str) -> list[str]:
    """Label filters matching the volume of one claim (``namespace/name``) on ``node``."""
    return [*held_filters(node)[:2], f"{CLAIM}={claim}"]


def held(volumes: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The claims (``namespace/name``) whose volumes are in ``volumes`` (name -> labels), sorted."""
    return sorted({labels[CLAIM] for labels in volumes.values() if labels.get(CLAIM)})


def deleted(volumes: Mapping[str, Mapping[str, str]], mset: ManifestSet) -> list[str]:
    """Claims held here (``volumes``: name -> labels) whose volumes are to be deleted, sorted.

    A claim document's volume goes when the document is gone from the revision; a template claim's
    when its StatefulSet is gone or scaled below its ordinal, if the retention policy it was created
    under says Delete. Nothing counts as gone while a file of the revision is unreadable (it may hold
    the document), and a document that is invalid keeps its volumes: a typo must never delete data.
    """
    if mset.unreadable_files:
        return []
    kept = {claim_id(c.namespace, c.name) for c in mset.claims}
    invalid = set(mset.invalid_keys)
    for key in invalid:
        namespace, _, rest = key.partition("/")
        kind, _, name = rest.partition("/")
        if kind == "PersistentVolumeClaim":
            kept.add(claim_id(namespace, name))
    replicas = {str(w.key): w.replicas for w in mset.workloads}
    gone = set()
    for labels in volumes.values():
        claim, owner = labels.get(CLAIM, ""), labels.get(OWNER)
        when = labels.get(DELETE_WHEN, "").split(",")
        if owner is None:
            if claim and claim not in kept:
                gone.add(claim)
        elif owner not in replicas and owner not in invalid:
            if "deleted" in when:
                gone.add(claim)
        elif owner in replicas and "scaled" in when and _ordinal(labels) >= replicas[owner]:
            gone.add(claim)
    return sorted(gone)


def _ordinal(labels: Mapping[str, str]) -> int:
    try:
        return int(labels.get(ORDINAL, ""))
    except ValueError:
        return -1  # unreadable: never counts as scaled away


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

    A volume a VolumeRelease names no longer counts. A claim that several nodes still hold maps to
    their names joined by ``+`` (no node is named so): either volume may be the one with the data
    (a copy being imported, say), so its users run nowhere until all but one are released.
    """
    released = {(claim_id(r.namespace, r.claim), node) for r in releases for node in r.nodes}
    found: dict[str, list[str]] = {}
    for node in sorted(reports):
        for claim in reports[node].volumes or ():
            if (claim, node) not in released:
                found.setdefault(claim, []).append(node)
    return {claim: AMBIGUOUS.join(nodes) for claim, nodes in found.items()}


AMBIGUOUS = "+"


def place_pinned(
    workloads: Sequence[Workload],
    nodes: Sequence[NodeInfo],
    previous: Mapping[ReplicaId, str],
    held: Mapping[str, str],
    now: datetime | None = None,
) -> Pinned:
    """``place`` (at ``now``) with claim users pinned to the holder of each claim's volume (``held``: claim -> node).

    A claim no node holds yet goes where placement puts its first user (by replica id), and its
    other users follow, so one claim never gets two volumes. Users of a claim whose holder is
    down are not placed at all: they would start on an empty volume.
    """
    users = {w.key: [claim_id(w.namespace, c) for c in w.pod.claims()] for w in workloads if w.pod.claims()}
    if not users:
        return _follow_replica_claims(place(workloads, nodes, previous, now), workloads, held, nodes)
    assignment = place(*_pinned(workloads, nodes, users, held), previous, now)
    chosen = dict(held)
    for rid, node in sorted(assignment.owners().items()):
        for claim in users.get(rid.key, ()):
            chosen.setdefault(claim, node)
    if chosen != held:
        assignment = place(*_pinned(workloads, nodes, users, chosen), previous, now)
    live = {n.name for n in nodes}
    why: dict[WorkloadKey, str] = {}
    for key, claims in users.items():
        down = [(c, chosen[c]) for c in claims if c in chosen and chosen[c] not in live]
        if down:
            why[key] = _lost_why(*down[0])
    lost = [(k, i, why[k]) for k, i, _ in assignment.unschedulable if k in why]
    kept = [u for u in assignment.unschedulable if u[0] not in why]
    pinned = _follow_replica_claims(assignment.model_copy(update={"unschedulable": kept}), workloads, held, nodes)
    return Pinned(pinned.assignment, lost + pinned.lost)


def _follow_replica_claims(
    assignment: Assignment, workloads: Sequence[Workload], held: Mapping[str, str], nodes: Sequence[NodeInfo]
) -> Pinned:
    """Each StatefulSet replica whose template claim has a volume goes to that volume's node, or nowhere if it is down.

    Capacity is not counted again: a replica runs where its data is. A cordoned holder takes no
    replica, as placement does for claims of whole workloads: the replica is unschedulable.
    """
    per_node = {n: list(rids) for n, rids in assignment.per_node.items()}
    unschedulable = list(assignment.unschedulable)
    live = {n.name: n for n in nodes}
    lost: list[tuple[WorkloadKey, int, str]] = []
    for w in workloads:
        if w.stateful is None or not w.stateful.claims:
            continue
        for r in range(w.replicas):
            rid = ReplicaId(w.key, r)
            claim = claim_id(w.namespace, replica_claim(w.stateful.claims[0].name, rid))
            node = held.get(claim)
            if node is None:
                continue
            for rids in per_node.values():
                if rid in rids:
                    rids.remove(rid)
            unschedulable = [u for u in unschedulable if (u[0], u[1]) != (w.key, r)]
            if node not in live:
                lost.append((w.key, r, _lost_why(claim, node)))
            elif live[node].cordoned:
                unschedulable.append(
                    (w.key, r, f"the volume of PersistentVolumeClaim {claim} is on cordoned node {node}")
                )
            else:
                per_node.setdefault(node, []).append(rid)
    per_node = {n: sorted(rids) for n, rids in per_node.items()}
    update = {"per_node": per_node, "unschedulable": sorted(unschedulable)}
    return Pinned(assignment.model_copy(update=update), lost)


def _lost_why(claim: str, node: str) -> str:
    if AMBIGUOUS in node:
        return (
            f"PersistentVolumeClaim {claim} has volumes on nodes {', '.join(node.split(AMBIGUOUS))}; release "
            f"every one but the volume with the data: gitops volume release {claim} --from NODE"
        )
    return (
        f"the volume of PersistentVolumeClaim {claim} is on node {node}, which is down; restore its data "
        f"on another node or accept an empty volume, then: gitops volume release {claim} --from {node}"
    )


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
