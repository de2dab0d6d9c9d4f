"""The pure planner: (desired instances, observed containers) -> actions, each with its cause."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import ContainerSpec, Workload
from gitops.states import Reason, State


@dataclass(frozen=True)
class Instance:
    """One replica of one workload that this node should run."""

    workload: Workload
    replica: int
    revision: str
    gpu_ids: tuple[str, ...] = ()

    @cached_property
    def id(self) -> ReplicaId:
        """(workload key, replica index); cached, as the pass reads it for every decision."""
        return ReplicaId(self.workload.key, self.replica)

    @property
    def spec_hash(self) -> str:
        """Hash of the pod spec this replica should run."""
        return self.workload.spec_hash


@dataclass(frozen=True)
class Action:
    """One engine call and why it is needed."""

    op: Literal["run", "start", "restart", "stop", "remove"]
    replica: ReplicaId
    cause: str
    # run: the instance and which of its pod's containers; start/remove: the container.
    instance: Instance | None = None
    container: ContainerSpec | None = None
    target: Observed | None = None

    def describe(self) -> str:
        """One line for logs and ``gitops plan``."""
        key, idx = self.replica
        what = self.container.name if self.container else (self.target.name if self.target else "")
        return f"{self.op} {key}[{idx}] {what}: {self.cause}"


@dataclass(frozen=True)
class PlanInputs:
    """Everything besides desired and observed state that gates what the planner may do."""

    # A whole valid revision may prune workloads it no longer names; a broken one may not.
    prune_allowed: bool = True
    # Workloads that failed validation with no earlier valid spec: never touched.
    protected_keys: frozenset[str] = frozenset()
    # Replicas this node no longer owns but must keep until their new owner is ready.
    hold: frozenset[ReplicaId] = frozenset()
    # Every workload key in the revision: replicas of these that are not ours are moved, not pruned.
    workload_keys: frozenset[str] = frozenset()
    # Exclusive workloads this node must stop because it could not push a heartbeat (fencing).
    fenced: frozenset[str] = frozenset()
    # Replicas this node owns but may not start yet, with why (break-before-make).
    blocked: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Job indices finished (succeeded or failed for good) at their current spec, anywhere.
    finished: Mapping[ReplicaId, State] = field(default_factory=dict)
    # Rollout gates: replicas that must not move to the new spec yet, with why.
    wait: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Job indices that failed in this pass (also in ``finished``): past activeDeadlineSeconds, out
    # of retries, by a podFailurePolicy rule, or with their Job. Running containers are stopped, with why.
    stop: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Finished Job indices past ttlSecondsAfterFinished: their containers are removed, results kept.
    expired: frozenset[ReplicaId] = frozenset()
    # Unfinished indices of a suspended Job, with why: their containers are removed, none started.
    suspended: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Job indices whose failure a podFailurePolicy Ignore rule matched: replaced, not counted.
    replace: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Replicas whose new container missed the progress deadline: drop it, keep the old one.
    abort: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Containers whose readiness passed (running and no readiness probe counts as ready).
    ready_ids: frozenset[str] = frozenset()
    # Running containers whose liveness probe failed: restarted in place.
    unhealthy_ids: frozenset[str] = frozenset()
    # Crash-loop backoff: replica -> earliest time (epoch seconds) of its next restart.
    restart_not_before: Mapping[ReplicaId, float] = field(default_factory=dict)
    # Replicas this node's admission policy denies, with the rules: their containers are removed.
    denied: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Replicas whose earlier actions are still in flight (a pull, a start, a stop): left alone.
    busy: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Surplus StatefulSet ordinals kept while a higher one still exists (OrderedReady scale-down), with why.
    ordered_stop: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Replicas whose last creation failed in an init container: recreated after their backoff.
    init_failed: frozenset[ReplicaId] = frozenset()
    # Workloads some Service selects: their ready containers drain before they are stopped.
    behind_service: frozenset[WorkloadKey] = frozenset()
    # Container id -> when it began draining (out of every node's endpoints, still running), and for how long.
    draining: Mapping[str, float] = field(default_factory=dict)
    drain_s: float = 0.0
    now: float = 0.0


@dataclass
class Plan:
    """The actions of one pass plus per-replica notes for status."""

    actions: list[Action] = field(default_factory=list)
    # replica -> (state, reason) for replicas the plan deliberately leaves alone
    waiting: dict[ReplicaId, tuple[Reason, str]] = field(default_factory=dict)
    # Container id -> when it began draining, for the containers still draining (the next pass's input).
    draining: dict[str, float] = field(default_factory=dict)


def _is_pod_complete(inst: Instance, containers: Sequence[Observed]) -> bool:
    have = {c.container for c in containers}
    return all(c.name in have for c in inst.workload.pod.long_running())


def _needs_restart(inst: Instance, c: Observed) -> bool:
    if c.state in ("running", "restarting", "paused", "removing"):
        return False
    if c.state == "created":
        return True  # its start failed (or was interrupted): retried, whatever the policy
    # A native sidecar is restarted whenever it exits, whatever the pod's policy.
    policy = "Always" if c.role == "sidecar" else inst.workload.pod.restart_policy
    if policy == "Never":
        # Kubernetes retries a failed Job pod (a new one) up to backoffLimit; we restart it in place.
        return inst.workload.kind in ("Job", "CronJob") and c.exit_code not in (0, None)
    if policy == "OnFailure":
        return c.exit_code not in (0, None)
    return True


def plan(desired: Sequence[Instance], observed: Sequence[Observed], inputs: PlanInputs) -> Plan:
    """Diff what should run against what runs; pure, deterministic in its inputs."""
    # A replica whose actions are in flight this pass keeps draining where it was.
    result = Plan(draining={c.id: inputs.draining[c.id] for c in observed if c.id in inputs.draining})
    by_replica: dict[ReplicaId, list[Observed]] = defaultdict(list)
    for c in observed:
        by_replica[c.rid].append(c)
    wanted = {i.id: i for i in desired}
    desired_keys = {i.workload.key for i in desired} | inputs.workload_keys

    for rid in sorted(inputs.busy):
        result.waiting[rid] = (Reason.IN_PROGRESS, inputs.busy[rid])
    for rid in sorted(wanted):
        if rid not in inputs.busy:
            _plan_replica(wanted[rid], by_replica.get(rid, []), inputs, result)

    for rid in sorted(by_replica):
        if rid in wanted or rid in inputs.busy:
            continue
        if rid[0] in inputs.fenced:
            result.actions += _remove_all(rid, by_replica[rid], "fenced: no heartbeat reached Git within the timeout")
            continue
        if rid in inputs.denied:
            result.actions += _remove_all(rid, by_replica[rid], inputs.denied[rid])
            continue
        if rid[0] in inputs.protected_keys:
            continue
        if rid in inputs.ordered_stop:
            result.waiting[rid] = (Reason.WAITING, inputs.ordered_stop[rid])
            continue
        if rid in inputs.hold:
            result.waiting[rid] = (Reason.HANDOFF, "kept until its new owner reports it ready")
            continue
        if rid[0] in desired_keys:
            result.actions += _drain_then_remove(
                rid, by_replica[rid], "replica no longer assigned to this node", inputs, result
            )
        elif inputs.prune_allowed:
            result.actions += _drain_then_remove(
                rid, by_replica[rid], "workload no longer in the repository", inputs, result
            )
        else:
            result.waiting[rid] = (Reason.NOT_PRUNED, "not pruned: this revision has invalid manifests")
    return result


def _plan_replica(inst: Instance, have_unsorted: Sequence[Observed], inputs: PlanInputs, result: Plan) -> None:
    rid = inst.id
    have = sorted(have_unsorted, key=lambda c: c.name)
    current = [c for c in have if c.spec_hash == inst.spec_hash and _gpus_match(inst, c)]
    stale = [c for c in have if c not in current]
    # The executor removes the init containers it ran; one still here failed, or its start was cut short.
    inits = [c for c in current if c.role == "init"]
    current = [c for c in current if c not in inits]
    if inst.workload.kind in ("Job", "CronJob") and rid in inputs.finished:
        result.actions += _remove_all(rid, stale, "superseded by a finished run of the current spec")
        if rid in inputs.expired:
            result.actions += _remove_all(rid, current, "ttlSecondsAfterFinished passed")
        else:
            # Stopped, not removed: their logs stay for `docker logs`. Sidecars end with their Job.
            cause = inputs.stop.get(rid, "the Job's main containers finished")
            ending = [c for c in current if c.state == "running" and (rid in inputs.stop or c.role == "sidecar")]
            result.actions += [Action("stop", rid, cause, target=c) for c in ending]
        return
    if rid in inputs.suspended:
        # As Kubernetes deletes a suspended Job's pods: resuming starts the index afresh.
        result.actions += _remove_all(rid, have, inputs.suspended[rid])
        result.waiting[rid] = (Reason.SUSPENDED, inputs.suspended[rid])
        return
    if rid in inputs.replace:
        # A new pod, as Kubernetes makes one, so the failure counts toward no backoff.
        result.actions += _remove_all(rid, have, inputs.replace[rid]) + _run_all(inst, inputs.replace[rid])
        return
    if rid in inputs.abort and current and stale:
        result.actions += _remove_all(rid, current, inputs.abort[rid])
        result.waiting[rid] = (Reason.ROLLOUT_FAILED, inputs.abort[rid])
        return
    if current and _is_pod_complete(inst, current):
        if stale and not all(c.id in inputs.ready_ids for c in current):
            # Make-before-break: the old container serves until the new one is ready.
            result.waiting[rid] = (Reason.ROLLING_UPDATE, f"waiting for {inst.spec_hash[:8]} to become ready")
        else:
            # The stale containers' ports left this replica's row when the new ones appeared.
            cause = f"replaced by spec {inst.spec_hash[:8]}"
            result.actions += _drain_then_remove(rid, stale, cause, inputs, result, announce=False)
        result.actions += _remove_all(rid, inits, "init container left from an interrupted start")
        _plan_restarts(inst, current, inputs, result)
        return
    for gate in (inputs.blocked, inputs.wait):
        if rid in gate:
            result.waiting[rid] = (Reason.WAITING, gate[rid])
            return
    not_before = inputs.restart_not_before.get(rid, 0.0)
    if rid in inputs.init_failed and inputs.now < not_before:
        result.waiting[rid] = (Reason.CRASH_LOOP, f"init containers run again in {not_before - inputs.now:.0f}s")
        return
    cause = _create_cause(inst, current, stale)
    # Partial pods are rebuilt whole: the shared network namespace may be gone.
    run = _run_all(inst, cause)
    if _break_before_make(inst):
        removed = _drain_then_remove(rid, have, "replaced (break-before-make)", inputs, result)
        result.actions += removed + run if removed or not have else []
    else:
        result.actions += _remove_all(rid, current + inits, "incomplete pod, rebuilt") + run


def _plan_restarts(inst: Instance, current: Sequence[Observed], inputs: PlanInputs, result: Plan) -> None:
    rid = inst.id
    for c in current:
        if c.id in inputs.unhealthy_ids and c.state == "running":
            result.actions.append(Action("restart", rid, "liveness probe failed", target=c))
            continue
        if not _needs_restart(inst, c):
            continue
        not_before = inputs.restart_not_before.get(rid, 0.0)
        if inputs.now < not_before:
            result.waiting[rid] = (Reason.CRASH_LOOP, f"next restart in {not_before - inputs.now:.0f}s")
            continue
        why = "created but never started" if c.exit_code is None else f"exited with code {c.exit_code}"
        cause = f"{why}; restartPolicy {inst.workload.pod.restart_policy}"
        result.actions.append(Action("start", rid, cause, target=c))


def _gpus_match(inst: Instance, c: Observed) -> bool:
    return c.labels.get("gitops.gpus", "") == ",".join(inst.gpu_ids)


def _break_before_make(inst: Instance) -> bool:
    w = inst.workload
    return w.exclusive or bool(w.pod.host_ports())


def _create_cause(inst: Instance, current: Sequence[Observed], stale: Sequence[Observed]) -> str:
    if current:
        return "pod incomplete or never started"
    if stale:
        return f"spec changed {stale[0].spec_hash[:8]} -> {inst.spec_hash[:8]} at {inst.revision[:7]}"
    return f"missing (revision {inst.revision[:7]})"


def _run_all(inst: Instance, cause: str) -> list[Action]:
    return [Action("run", inst.id, cause, instance=inst, container=spec) for spec in inst.workload.pod.long_running()]


def _drain_then_remove(
    rid: ReplicaId,
    containers: Sequence[Observed],
    cause: str,
    inputs: PlanInputs,
    result: Plan,
    announce: bool = True,
) -> list[Action]:
    """Remove ``containers``, once those serving a Service have been out of every node's endpoints long enough.

    A ready container of a workload a Service selects first drains for ``inputs.drain_s``: its replica's
    row says Terminating (``announce``), which takes it out of this node's table at once and out of the
    peers' tables when they next read this node's record; SIGTERM comes after, so no peer still sends it
    new connections. The others are removed at once.
    """
    serving = [c for c in containers if c.key in inputs.behind_service and c.id in inputs.ready_ids]
    left = 0.0
    for c in serving:
        since = result.draining.setdefault(c.id, inputs.now)
        left = max(left, since + inputs.drain_s - inputs.now)
    if left <= 0:
        for c in serving:
            del result.draining[c.id]
        return _remove_all(rid, containers, cause)
    if announce:
        # One message for the whole drain: a countdown would make every pass's record differ.
        result.waiting[rid] = (Reason.TERMINATING, f"draining from Service endpoints for {inputs.drain_s:g}s")
    return []


def _remove_all(rid: ReplicaId, containers: Sequence[Observed], cause: str) -> list[Action]:
    # Native sidecars go last: they serve the app containers until those have stopped.
    ordered = sorted(containers, key=lambda c: c.role == "sidecar")
    return [Action("remove", rid, cause, target=c) for c in ordered]
