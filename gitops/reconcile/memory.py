"""What a node remembers between passes: crash-loop streaks, rollouts in flight, results.

Everything here is either rebuilt from observation or recovered from the node's own
status record at start-up, so a restarted daemon picks up where it left off. The pure
policy reads it and returns a ``MemoryUpdate``; only the orchestrator writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitops.identity import ReplicaId, WorkloadKey
from gitops.states import FINISHED_STATES, State
from gitops.status import NodeStatus

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0


@dataclass(frozen=True)
class JobResult:
    """The final result of one Job index at one spec: reported until the spec changes."""

    spec_hash: str
    state: State  # succeeded | failed
    reason: str
    message: str | None = None
    exit_code: int | None = None
    container: str | None = None


@dataclass
class RestartTrack:
    """Crash-loop bookkeeping for one replica."""

    total: int = 0
    streak: int = 0
    last: float = 0.0


@dataclass(frozen=True)
class MemoryUpdate:
    """What one pass's policy learnt: applied by the orchestrator after the decision."""

    results: dict[ReplicaId, JobResult] = field(default_factory=dict)
    # Replaces the whole map (None keeps it): replicas whose new spec starts while the old one serves.
    in_flight: dict[ReplicaId, tuple[str, float]] | None = None
    rollout_failed: dict[WorkloadKey, tuple[str, str]] = field(default_factory=dict)
    streaks_reset: frozenset[ReplicaId] = frozenset()
    # Replaces the whole map (None keeps it): Jobs finished as a whole, since when (TTL).
    jobs_done: dict[WorkloadKey, tuple[str, float]] | None = None
    # Keep only the results and halted rollouts still current (None: keep all).
    current_specs: dict[WorkloadKey, str] | None = None


@dataclass
class Memory:
    """Per-replica state that outlives one pass."""

    backoff_scale: float = 1.0
    restarts: dict[ReplicaId, RestartTrack] = field(default_factory=dict)
    # Job results this node produced, reported until the workload or its spec changes
    finished: dict[ReplicaId, JobResult] = field(default_factory=dict)
    # replica -> (reason, message) of its last failed engine action
    failures: dict[ReplicaId, tuple[str, str]] = field(default_factory=dict)
    # replica -> (new spec hash, monotonic time it started) while the old container still serves
    in_flight: dict[ReplicaId, tuple[str, float]] = field(default_factory=dict)
    # workload key -> (spec hash, reason): rollouts this node halted
    rollout_failed: dict[WorkloadKey, tuple[str, str]] = field(default_factory=dict)
    # container id -> monotonic time first seen running (probe delays, Job deadlines)
    running_since: dict[str, float] = field(default_factory=dict)
    # Job key -> (spec hash, monotonic time this node first saw every index finished), for the TTL
    jobs_done: dict[WorkloadKey, tuple[str, float]] = field(default_factory=dict)
    # replica -> (state, since) so a row's ``since`` only moves when its state does
    since: dict[ReplicaId, tuple[str, str]] = field(default_factory=dict)
    # container id -> monotonic time it began draining from Service endpoints (``plan.Plan.draining``)
    draining: dict[str, float] = field(default_factory=dict)

    def recover(self, own: NodeStatus | None) -> None:
        """Take back what only our own status remembers: Job results, restarts, halted rollouts."""
        if own is None:
            return
        for r in own.workloads:
            if r.kind in ("Job", "CronJob") and r.state in FINISHED_STATES:
                self.finished[r.rid] = JobResult(
                    r.spec_hash, State(r.state), r.reason or "", r.message, r.exit_code, r.container
                )
            if r.restarts:
                self.restarts[r.rid] = RestartTrack(total=r.restarts)
            if r.failed_spec_hash:
                self.rollout_failed[r.key] = (r.failed_spec_hash, r.message or "")

    def apply(self, update: MemoryUpdate) -> None:
        """Take in what a pass's policy decided."""
        self.finished.update(update.results)
        if update.in_flight is not None:
            self.in_flight = dict(update.in_flight)
        if update.jobs_done is not None:
            self.jobs_done = dict(update.jobs_done)
        self.rollout_failed.update(update.rollout_failed)
        for rid in update.streaks_reset:
            if (t := self.restarts.get(rid)) is not None:
                t.streak = 0
        if update.current_specs is not None:
            specs = update.current_specs
            self.finished = {rid: r for rid, r in self.finished.items() if specs.get(rid.key) == r.spec_hash}
            self.rollout_failed = {k: v for k, v in self.rollout_failed.items() if specs.get(k) == v[0]}

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

    def total_restarts(self, rid: ReplicaId) -> int:
        """Restarts counted for a replica since this node first ran it."""
        t = self.restarts.get(rid)
        return t.total if t else 0

    def streak_resettable(self, rid: ReplicaId, now: float) -> bool:
        """Whether a replica has run long enough since its last restart to forget its crash loop."""
        t = self.restarts.get(rid)
        return t is not None and t.streak > 0 and now - t.last > BACKOFF_RESET_S * self.backoff_scale
