"""The cluster view: which nodes are live and what they report, read from status branches."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gitops.identity import ReplicaId
from gitops.placement import NodeInfo
from gitops.states import RELEASING_REASONS, RUNNING_STATES
from gitops.status import NodeStatus


@dataclass(frozen=True)
class ClusterView:
    """Reports of every node that has a status branch, and which of them are live."""

    reports: Mapping[str, NodeStatus]
    live: frozenset[str]
    ages: Mapping[str, float] = field(default_factory=dict)

    def node_infos(self, cordoned: frozenset[str]) -> list[NodeInfo]:
        """Live nodes as placement inputs, sorted by name."""
        out = []
        for name in sorted(self.live):
            r = self.reports[name]
            out.append(
                NodeInfo(
                    name=name,
                    labels=r.labels,
                    cpu_millis=r.capacity.cpu,
                    memory_mib=r.capacity.memory,
                    gpus=tuple(g.uuid for g in r.capacity.gpus),
                    cordoned=name in cordoned,
                )
            )
        return out

    def placements(self) -> dict[ReplicaId, str]:
        """Where live nodes say each replica runs: the sticky input to placement.

        Copies a node is only keeping until a successor is ready (or keeps because the
        revision is broken) are not claims, or the replica could bounce back to them.
        """
        prev: dict[ReplicaId, str] = {}
        for name in sorted(self.live):
            for r in self.reports[name].workloads:
                if r.state in RUNNING_STATES and r.reason not in RELEASING_REASONS:
                    prev.setdefault(r.rid, name)
        return prev


class Membership:
    """Judges liveness so that clock skew between nodes cannot flap membership.

    A heartbeat's own timestamp is trusted only as one witness; the other is this
    node's monotonic clock at the moment it first saw that status commit. A node is
    live while either witness is younger than the timeout, so a peer whose clock runs
    a few seconds behind still counts as live as long as its commits keep changing.
    """

    def __init__(self) -> None:
        self._first_seen: dict[str, tuple[str, float | None]] = {}

    def view(
        self,
        reports: Mapping[str, NodeStatus],
        heads: Mapping[str, str],
        timeout_s: float,
        now: datetime | None = None,
        monotonic: float | None = None,
    ) -> ClusterView:
        """Build the view from fetched reports and their commit ids."""
        now = now or datetime.now(UTC)
        mono = time.monotonic() if monotonic is None else monotonic
        live: set[str] = set()
        ages: dict[str, float] = {}
        for name, report in reports.items():
            sha = heads.get(name, "")
            seen = self._first_seen.get(name)
            if seen is None or seen[0] != sha:
                # First sight says nothing about when it was written; a later change does.
                seen = (sha, None if seen is None else mono)
                self._first_seen[name] = seen
            observed_age = float("inf") if seen[1] is None else mono - seen[1]
            hb = report.heartbeat_time()
            stamp_age = (now - hb).total_seconds() if hb else float("inf")
            age = min(max(stamp_age, 0.0), observed_age)
            ages[name] = age
            if age <= timeout_s:
                live.add(name)
        return ClusterView(reports=dict(reports), live=frozenset(live), ages=ages)
