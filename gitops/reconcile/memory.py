"""What a node remembers between passes: crash-loop streaks, rollouts in flight, results.

Everything here is either rebuilt from observation or recovered from the node's own
status record at start-up, so a restarted daemon picks up where it left off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitops.identity import ReplicaId, WorkloadKey
from gitops.status import NodeStatus, ReplicaStatus

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0


@dataclass
class RestartTrack:
    """Crash-loop bookkeeping for one replica."""

    total: int = 0
    streak: int = 0
    last: float = 0.0


@dataclass
class Memory:
    """Per-replica state that outlives one pass."""

    backoff_scale: float = 1.0
    restarts: dict[ReplicaId, RestartTrack] = field(default_factory=dict)
    # replica -> (state, since) so ``since`` only moves when the state does
    since: dict[ReplicaId, tuple[str, str]] = field(default_factory=dict)
    # Job results this node produced, reported until the workload or its spec changes
    finished: dict[ReplicaId, ReplicaStatus] = field(default_factory=dict)
    # replica -> (reason, message) of its last failed engine action
    failures: dict[ReplicaId, tuple[str, str]] = field(default_factory=dict)
    # replica -> (new spec hash, monotonic time it started) while the old container still serves
    in_flight: dict[ReplicaId, tuple[str, float]] = field(default_factory=dict)
    # workload key -> (spec hash, reason): rollouts this node halted
    rollout_failed: dict[WorkloadKey, tuple[str, str]] = field(default_factory=dict)
    # container id -> monotonic time first seen running (probe delays, Job deadlines)
    running_since: dict[str, float] = field(default_factory=dict)

    def recover(self, own: NodeStatus | None) -> None:
        """Take back what only our own status remembers: Job results, restarts, halted rollouts."""
        if own is None:
            return
        for r in own.workloads:
            rid = r.rid
            if r.kind in ("Job", "CronJob") and r.state in ("succeeded", "failed"):
                self.finished[rid] = r
            if r.restarts:
                self.restarts[rid] = RestartTrack(total=r.restarts)
            if r.failed_spec_hash:
                self.rollout_failed[r.key] = (r.failed_spec_hash, r.message or "")

    def backoff(self, streak: int) -> float:
        """Delay before the next restart after ``streak`` restarts in a row: 0, 10, 20, 40 ... 300 s."""
        if streak <= 0:
            return 0.0
        return float(min(BACKOFF_START_S * 2 ** (streak - 1), BACKOFF_MAX_S) * self.backoff_scale)

    def not_before(self) -> dict[ReplicaId, float]:
        """Earliest next restart per replica in a crash loop."""
        return {rid: t.last + self.backoff(t.streak) for rid, t in self.restarts.items() if t.streak > 0}

    def restarted(self, rid: ReplicaId, now: float, counted: bool = True) -> None:
        """Record a restart (or a failed start, which backs off the same way)."""
        t = self.restarts.setdefault(rid, RestartTrack())
        t.total += counted
        t.streak += 1
        t.last = now

    def healthy_for_a_while(self, rid: ReplicaId, now: float) -> None:
        """Reset the crash-loop streak of a replica running long enough since its last restart."""
        t = self.restarts.get(rid)
        if t is not None and t.streak and now - t.last > BACKOFF_RESET_S * self.backoff_scale:
            t.streak = 0
