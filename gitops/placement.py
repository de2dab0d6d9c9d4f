"""Deterministic placement: which live node runs which replica. Pure, no I/O.

PLACEHOLDER ALGORITHM: naive first-fit in node-name order. To be replaced by
capacity-weighted rendezvous hashing (DESIGN.md section 5) keeping this interface.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from gitops.manifests.types import Workload

ALGORITHM_VERSION = "naive-0"

ReplicaId = tuple[str, int]  # (workload key, replica index)


class NodeInfo(BaseModel):
    """A live node as placement sees it: labels and allocatable capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    cpu_millis: int
    memory_mib: int
    gpus: tuple[str, ...] = ()  # GPU UUIDs
    cordoned: bool = False


class Assignment(BaseModel):
    """Result of placement: replicas per node, and those that fit nowhere with why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # node name -> sorted list of (workload key, replica index)
    per_node: dict[str, list[ReplicaId]] = Field(default_factory=dict)
    # (workload key, replica index, reason)
    unschedulable: list[tuple[str, int, str]] = Field(default_factory=list)

    def for_node(self, node: str) -> list[ReplicaId]:
        """Replicas assigned to ``node``."""
        return self.per_node.get(node, [])

    def owner(self, replica: ReplicaId) -> str | None:
        """Node that holds ``replica``, if any (DaemonSets: first match only)."""
        for node, items in self.per_node.items():
            if replica in items:
                return node
        return None

    def digest(self, revision: str, live: Sequence[str]) -> str:
        """Hex digest of (revision, live set, algorithm, assignment) so divergent views show."""
        payload = {
            "revision": revision,
            "live": sorted(live),
            "algorithm": ALGORITHM_VERSION,
            "per_node": {n: [list(r) for r in sorted(v)] for n, v in sorted(self.per_node.items())},
            "unschedulable": sorted(list(u) for u in self.unschedulable),
        }
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()


def place(
    workloads: Sequence[Workload],
    nodes: Sequence[NodeInfo],
    previous: Mapping[ReplicaId, str] | None = None,
) -> Assignment:
    """Assign every replica of ``workloads`` to a node in ``nodes``."""
    del previous
    per_node: dict[str, list[ReplicaId]] = {}
    unschedulable: list[tuple[str, int, str]] = []
    usable = sorted((n for n in nodes if not n.cordoned), key=lambda n: n.name)
    for w in sorted(workloads, key=lambda w: w.key):
        if w.kind == "CronJob":
            continue
        matching = [n for n in usable if all(n.labels.get(k) == v for k, v in w.node_selector.items())]
        if w.kind == "DaemonSet":
            for n in matching:
                per_node.setdefault(n.name, []).append((w.key, 0))
            continue
        for r in range(w.replicas):
            if matching:
                per_node.setdefault(matching[r % len(matching)].name, []).append((w.key, r))
            else:
                unschedulable.append((w.key, r, "no live node matches nodeSelector"))
    return Assignment(per_node={k: sorted(v) for k, v in sorted(per_node.items())}, unschedulable=unschedulable)
