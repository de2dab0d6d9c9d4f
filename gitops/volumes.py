"""Node-local volumes of PersistentVolumeClaims: their names and labels, and which ones to delete.

A claim's volume is a named Docker volume on the node where its first user was placed. It is
labelled with the claim (``namespace/name``) and the node, so the node finds it again after any
restart, and publishes the claims it holds in its status record. It outlives containers,
rollouts and daemon restarts; only deleting the claim's document from the repository deletes it.
"""

from __future__ import annotations

from collections.abc import Mapping

from gitops.identity import LABEL, MANAGED
from gitops.model import ManifestSet

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
