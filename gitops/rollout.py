"""Cluster-wide rollout gates, computed by every node from the same status records. Pure.

No node coordinates a rollout; each one derives the same gate from what all nodes
report, and only acts on its own replicas:

- StatefulSet: OrderedReady creates ordinal r only once 0..r-1 run ready; updates go from the
  highest ordinal down, one at a time, each ready before the next; ordinals below the partition,
  and every ordinal under OnDelete, keep their spec while they run. Scaled down, OrderedReady
  ordinals stop from the highest down, each gone before the next stops.
- RollingUpdate: replicas move to the new spec in index order, at most
  ``maxSurge + maxUnavailable`` in flight (started at the new spec, not yet ready) at once.
  The old container keeps serving until the new one is ready, so readiness never drops.
- Recreate: every old replica stops first; new ones start once no node reports an old one.
- A replica not ready within ``progressDeadlineSeconds`` halts the rollout of that spec
  everywhere (its node reports ``failedSpecHash``); a new commit starts afresh.
- Jobs: at most ``parallelism`` completion indices run at once, lowest indices first;
  an index that succeeded anywhere never runs again at that spec. A suspended Job runs no
  index; a Job failed as a whole (a podFailurePolicy FailJob rule matched, or more than
  ``maxFailedIndexes`` indices failed) ends every index still unfinished.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gitops.identity import ReplicaId
from gitops.model import JobSpec, StatefulSpec, Workload
from gitops.states import Reason, State


@dataclass(frozen=True)
class ReplicaView:
    """What the cluster knows of one replica: the spec it runs (newest container) and its health."""

    spec_hash: str
    running: bool
    ready: bool
    finished: State | None = None  # succeeded | failed, for Job indices
    failed_spec_hash: str | None = None
    reason: str | None = None  # why a Job index finished


@dataclass(frozen=True)
class Gates:
    """What this node may do to its replicas in this pass."""

    # Replicas that must keep running their old spec for now, with why.
    wait: dict[ReplicaId, str] = field(default_factory=dict)
    # Workload key -> (spec hash, reason) of a halted rollout.
    halted: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Job indices finished somewhere at the current spec (never rerun).
    finished: dict[ReplicaId, State] = field(default_factory=dict)
    # Unfinished indices of a suspended Job: none runs until it resumes.
    suspended: dict[ReplicaId, str] = field(default_factory=dict)
    # Unfinished indices of a Job that failed as a whole, with why: they end failed.
    job_failed: dict[ReplicaId, str] = field(default_factory=dict)


def compute_gates(workloads: Iterable[Workload], views: Mapping[ReplicaId, ReplicaView]) -> Gates:
    """Gates for every workload (Jobs and CronJob runs, not CronJobs), from the merged cluster view of its replicas."""
    gates = Gates()
    for w in workloads:
        if w.kind == "Deployment":
            _deployment(w, views, gates)
        elif w.stateful is not None:
            _stateful(w, views, gates)
        elif w.job is not None:
            _job(w, views, gates)
    return gates


def _deployment(w: Workload, views: Mapping[ReplicaId, ReplicaView], gates: Gates) -> None:
    new = w.spec_hash
    mine = {r: views[ReplicaId(w.key, r)] for r in range(w.replicas) if ReplicaId(w.key, r) in views}
    failed = next((v.failed_spec_hash for v in mine.values() if v.failed_spec_hash == new), None)
    if failed:
        gates.halted[w.key] = (new, "a replica did not become ready within progressDeadlineSeconds")
    old = sorted(r for r, v in mine.items() if v.spec_hash != new and v.running)
    if not old:
        return
    if w.strategy == "Recreate":
        # Break-before-make cluster-wide: the old ones stop on their own nodes first.
        return
    if failed:
        for r in old:
            gates.wait[ReplicaId(w.key, r)] = f"rollout of {new[:8]} halted"
        return
    in_flight = sum(1 for v in mine.values() if v.spec_hash == new and not v.ready)
    budget = max(1, w.max_surge + w.max_unavailable) - in_flight
    for r in old[max(0, budget) :]:
        gates.wait[ReplicaId(w.key, r)] = f"rolling update: waiting for a slot ({in_flight} in flight)"


def _stateful(w: Workload, views: Mapping[ReplicaId, ReplicaView], gates: Gates) -> None:
    """OrderedReady starts, and updates from the highest ordinal down, one at a time, above the partition."""
    spec = w.stateful or StatefulSpec()
    new = w.spec_hash
    mine = {r: views[ReplicaId(w.key, r)] for r in range(w.replicas) if ReplicaId(w.key, r) in views}
    if spec.ordered:
        # Ordinal r is created only once every lower ordinal runs and is ready.
        unready = next((r for r in range(w.replicas) if not (r in mine and mine[r].running and mine[r].ready)), None)
        if unready is not None:
            for r in range(unready + 1, w.replicas):
                if r not in mine or not mine[r].running:
                    gates.wait[ReplicaId(w.key, r)] = f"OrderedReady: waiting for {w.name}-{unready} to be ready"
    old = sorted((r for r, v in mine.items() if v.spec_hash != new and v.running), reverse=True)
    in_flight = any(v.spec_hash == new and not v.ready for v in mine.values())
    movable = [r for r in old if not spec.on_delete and r >= spec.partition]
    for r in old:
        if spec.on_delete:
            why = "OnDelete: keeps its spec until its container is removed"
        elif r < spec.partition:
            why = f"partition {spec.partition}: keeps its spec"
        elif r == movable[0] and not in_flight:
            continue
        else:
            why = "rolling update: highest ordinal first, one ready before the next"
        gates.wait[ReplicaId(w.key, r)] = why


def scale_down_order(workloads: Iterable[Workload], present: Iterable[ReplicaId]) -> dict[ReplicaId, str]:
    """Surplus ordinals of OrderedReady StatefulSets that wait while a higher one exists: they stop in reverse.

    ``present``: every replica with a container anywhere in the cluster (running, stopping or exited).
    """
    by_key: dict[str, list[int]] = {}
    for rid in present:
        by_key.setdefault(rid.key, []).append(rid.replica)
    out: dict[ReplicaId, str] = {}
    for w in workloads:
        if w.stateful is None or not w.stateful.ordered:
            continue
        surplus = sorted({r for r in by_key.get(w.key, ()) if r >= w.replicas}, reverse=True)
        for r in surplus[1:]:
            out[ReplicaId(w.key, r)] = f"OrderedReady scale-down: {w.name}-{surplus[0]} stops first"
    return out


def _job(w: Workload, views: Mapping[ReplicaId, ReplicaView], gates: Gates) -> None:
    new = w.spec_hash
    job = w.job or JobSpec()
    unfinished: list[ReplicaId] = []
    pending: list[ReplicaId] = []
    failed: list[ReplicaView] = []
    for r in range(w.replicas):
        rid = ReplicaId(w.key, r)
        v = views.get(rid)
        if v is not None and v.spec_hash == new and v.finished:
            gates.finished[rid] = v.finished
            if v.finished == State.FAILED:
                failed.append(v)
            continue
        unfinished.append(rid)
        if v is None or v.spec_hash != new or not v.running:
            pending.append(rid)
    ended = _job_failure(job, failed)
    if ended is not None or job.suspend:
        gate = gates.job_failed if ended is not None else gates.suspended
        gate.update(dict.fromkeys(unfinished, ended or "Job suspended (spec.suspend)"))
        return
    running = len(unfinished) - len(pending)
    for rid in pending[max(0, job.parallelism - running) :]:
        gates.wait[rid] = f"parallelism {job.parallelism}: {running} running"


def _job_failure(job: JobSpec, failed: Sequence[ReplicaView]) -> str | None:
    """Why the Job failed as a whole, or None: a FailJob rule matched, or too many indices failed."""
    if any(v.reason == Reason.POD_FAILURE_POLICY for v in failed):
        return "Job failed: a podFailurePolicy FailJob rule matched"
    if job.max_failed_indexes is not None and len(failed) > job.max_failed_indexes:
        return f"Job failed: {len(failed)} indexes failed, more than maxFailedIndexes {job.max_failed_indexes}"
    return None
