"""Pass policy: what this node may do to its replicas now. Pure: no Docker, no Git, no clock.

From (manifests, cluster view, placement, observation, memory, now) it decides which
instances this node should run and every gate on them: fencing of exclusive work when our
heartbeat cannot reach Git, make-before-break handoff, break-before-make for exclusive
replicas, cluster-wide rollout and Job gates (gitops/rollout.py), Job results, deadlines,
podFailurePolicy rules and TTLs (gitops/reconcile/jobs.py), and halting a rollout whose new
spec missed its progress deadline. It returns the planner's inputs and what memory should
learn; the orchestrator does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gitops.admission import Policy, verdict
from gitops.cluster import ClusterView, claims_expire_after
from gitops.gpu import Gpu, assign_gpus
from gitops.health import Health
from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import ClusterSpec, ManifestSet, Workload
from gitops.placement import Assignment
from gitops.reconcile.jobs import jobs_done, matching_rule, rule_message
from gitops.reconcile.memory import JobResult, Memory, MemoryUpdate
from gitops.reconcile.observe import Observation
from gitops.reconcile.plan import Instance, PlanInputs
from gitops.rollout import ReplicaView, compute_gates, scale_down_order
from gitops.services.selector import selected
from gitops.states import FINISHED_STATES, INIT_FAILURES, RELEASING_REASONS, RUNNING_STATES, Reason, State
from gitops.status import ReplicaStatus

JOB_KINDS = ("Job", "CronJob")


@dataclass(frozen=True)
class PassContext:
    """Everything one pass's policy reads; ``now`` is this node's monotonic clock."""

    node: str
    revision: str
    manifests: ManifestSet
    view: ClusterView
    assignment: Assignment
    observation: Observation
    memory: Memory
    gpus: Sequence[Gpu] = ()
    # Runs of CronJobs this node owns (Job-like workloads named after their slot).
    cron_runs: Sequence[Workload] = ()
    now: float = 0.0
    # Seconds since our last status push reached Git (fencing).
    silent_for: float = 0.0
    # Seconds since this node's first record reached Git: a fresh node learns its peers before it claims work.
    uptime: float = float("inf")
    # How long a fresh node only watches (None: see ``settle_seconds``).
    settle_s: float | None = None
    # Replicas whose earlier actions are still in flight, with what they are doing.
    busy: Mapping[ReplicaId, str] = field(default_factory=dict)
    # Container output this node may publish (node config ``status_logs``), by container id.
    logs: Mapping[str, str] = field(default_factory=dict)
    # This node's admission policy; None admits everything.
    policy: Policy | None = None
    # Seconds a replica behind a Service stays out of every node's endpoints before it is stopped.
    drain_s: float = 0.0


@dataclass(frozen=True)
class Decision:
    """The policy's answer: what to run, the planner's gates, and what memory learns."""

    desired: list[Instance]
    inputs: PlanInputs
    update: MemoryUpdate
    fenced: frozenset[WorkloadKey] = frozenset()
    # Replicas placed here that this node's policy denies, with the rules: never created.
    denied: Mapping[ReplicaId, str] = field(default_factory=dict)


def decide(ctx: PassContext) -> Decision:
    """The whole policy of one pass."""
    mset, obs = ctx.manifests, ctx.observation
    by_key = {w.key: w for w in mset.workloads}
    owners = ctx.assignment.owners()
    fenced = fenced_keys(mset, ctx.silent_for)
    desired = instances(ctx, fenced)
    denied = policy_denials(ctx.policy, desired)
    desired = [i for i in desired if i.id not in denied]
    results = job_results(desired, obs, ctx.memory, ctx.logs)
    deadlines, deadline_results = job_deadlines(desired, obs, ctx.now)
    results.update(deadline_results)
    known = {**ctx.memory.finished, **results}
    # A CronJob runs as its runs, each gated like a Job.
    gated = [*(w for w in mset.workloads if w.kind != "CronJob"), *ctx.cron_runs]
    gates = compute_gates(gated, replica_views(ctx, known))
    ended = job_failed_results(desired, obs, gates.job_failed, known)
    results.update(ended)
    known.update(ended)
    finished = {**gates.finished, **own_results(desired, known)}
    done, expired = jobs_done((*mset.workloads, *ctx.cron_runs), finished, ctx.memory.jobs_done, ctx.now)
    aborts, in_flight, halted = deadline_aborts(desired, obs, ctx.memory, ctx.now, ctx.logs)
    # Runs of CronJobs are ours to end whatever the revision holds: history and Replace drop them.
    runs = {c.key for c in obs.containers if c.key.kind == "CronJob"}
    inputs = PlanInputs(
        prune_allowed=not mset.errors,
        protected_keys=frozenset(WorkloadKey(k) for k in mset.invalid_keys),
        workload_keys=frozenset(by_key) | runs,
        fenced=fenced,
        hold=handoff_holds(ctx, owners, by_key, {i.id for i in desired}),
        blocked={
            **surge_blocks(ctx, owners, desired),
            **settle_blocks(ctx, desired),
            **exclusive_blocks(ctx, desired),
        },
        finished=finished,
        stop=failed_indices(desired, known) | deadlines,
        expired=frozenset(i.id for i in desired if i.workload.key in expired),
        suspended=gates.suspended,
        replace=ignored_failures(desired, obs, finished),
        wait=gates.wait,
        abort=aborts,
        ready_ids=obs.ready_ids,
        unhealthy_ids=obs.unhealthy_ids,
        restart_not_before=ctx.memory.not_before(),
        busy=ctx.busy,
        denied=denied,
        init_failed=frozenset(rid for rid, (reason, _) in ctx.memory.failures.items() if reason in INIT_FAILURES),
        ordered_stop=scale_down_order(mset.workloads, present_replicas(ctx)),
        behind_service=selected(mset.services, mset.workloads),
        draining=ctx.memory.draining,
        drain_s=ctx.drain_s,
        now=ctx.now,
    )
    update = MemoryUpdate(
        results=results,
        in_flight=in_flight,
        jobs_done=done,
        rollout_failed=halted,
        streaks_reset=frozenset(
            i.id for i in desired if _all_running(obs, i) and ctx.memory.streak_resettable(i.id, ctx.now)
        ),
        current_specs={w.key: w.spec_hash for w in (*mset.workloads, *ctx.cron_runs)},
    )
    return Decision(desired, inputs, update, fenced, denied)


def policy_denials(policy: Policy | None, desired: Sequence[Instance]) -> dict[ReplicaId, str]:
    """Instances this node's own policy denies, whatever placement said (a peer may run an older daemon)."""
    if policy is None:
        return {}
    found = {i.id: verdict(i.workload, policy) for i in desired}
    return {rid: "denied by this node's policy: " + "; ".join(rules) for rid, rules in found.items() if rules}


def fenced_keys(mset: ManifestSet, silent_for: float) -> frozenset[WorkloadKey]:
    """Exclusive workloads to stop because our heartbeat has not reached Git within the timeout."""
    if silent_for <= mset.cluster.node_timeout_seconds:
        return frozenset()
    return frozenset(w.key for w in mset.workloads if w.exclusive)


def instances(ctx: PassContext, fenced: frozenset[WorkloadKey]) -> list[Instance]:
    """The replicas this node should run: its placement share (less fenced work) and its CronJob runs."""
    by_key = {w.key: w for w in ctx.manifests.workloads}
    mine = [(by_key[rid.key], rid) for rid in ctx.assignment.for_node(ctx.node) if rid.key in by_key]
    mine = [(w, rid) for w, rid in mine if w.key not in fenced]
    demands = [(rid, w.pod.gpu_count()) for w, rid in mine if w.pod.gpu_count()]
    # GPUs stay with the replicas holding them: a sibling leaving must not reshuffle the rest.
    holders = {c.rid: c.gpu_ids for c in ctx.observation.containers if c.gpu_ids and c.state == "running"}
    gpu_ids = assign_gpus(ctx.gpus, demands, holders) if demands else {}
    runs = [Instance(w, r, ctx.revision) for w in ctx.cron_runs for r in range(w.replicas)]
    return [Instance(w, rid.replica, ctx.revision, gpu_ids.get(rid, ())) for w, rid in mine] + runs


def replica_views(ctx: PassContext, results: Mapping[ReplicaId, JobResult]) -> dict[ReplicaId, ReplicaView]:
    """Every replica as the cluster reports it, with our own replicas as we see them now."""
    view, obs = ctx.view, ctx.observation
    views: dict[ReplicaId, ReplicaView] = {}
    for name in sorted(view.reports):
        if name == ctx.node:
            continue
        live = name in view.live
        for r in view.reports[name].workloads:
            if r.reason in RELEASING_REASONS:
                continue
            done = State(r.state) if r.state in FINISHED_STATES and r.kind == "Job" else None
            # Results are permanent; a dead node's running replicas are not.
            if not live and not done:
                continue
            # A row with no container (waiting: settling, a gate, a pull not begun) runs nothing: counted
            # as running, nodes that all wait would hold each other's Job indices back for good.
            running = r.container is not None and r.state in RUNNING_STATES
            v = ReplicaView(r.spec_hash, running, r.state == State.READY, done, r.failed_spec_hash, r.reason)
            old = views.get(r.rid)
            if old is None or (v.running and not old.running) or (v.finished and not old.finished):
                views[r.rid] = v
    for rid, result in results.items():
        views[rid] = ReplicaView(result.spec_hash, False, False, result.state, None, result.reason)
    for rid, cs in obs.by_replica.items():
        newest = max(cs, key=lambda c: c.created)
        group = [c for c in cs if c.spec_hash == newest.spec_hash]
        failed = ctx.memory.rollout_failed.get(rid.key, ("", ""))[0] or None
        known = views.get(rid)
        views[rid] = ReplicaView(
            newest.spec_hash,
            running=any(c.state == "running" for c in group),
            ready=all(c.id in obs.ready_ids for c in group),
            finished=known.finished if known else None,
            failed_spec_hash=failed,
            reason=known.reason if known else None,
        )
    return views


def job_results(
    desired: Sequence[Instance], obs: Observation, memory: Memory, logs: Mapping[str, str]
) -> dict[ReplicaId, JobResult]:
    """Job indices that finished in this observation: all containers exited 0, or out of retries."""
    out: dict[ReplicaId, JobResult] = {}
    for inst in desired:
        w, rid = inst.workload, inst.id
        known = memory.finished.get(rid)
        if w.kind not in JOB_KINDS or (known is not None and known.spec_hash == inst.spec_hash):
            continue
        # A Job ends with its main containers; its native sidecars are stopped then.
        current = [c for c in obs.by_replica.get(rid, []) if c.spec_hash == inst.spec_hash and c.role != "sidecar"]
        exited = [c for c in current if c.state != "running"]
        limit = w.job.backoff_limit if w.job else 6
        failure = memory.failures.get(rid)
        if not current and failure and failure[0] in INIT_FAILURES and memory.total_restarts(rid) >= limit:
            out[rid] = JobResult(inst.spec_hash, State.FAILED, Reason.BACKOFF_LIMIT, failure[1])
            continue
        if not current or not exited:
            continue
        main = current[0]
        if len(exited) == len(current) and all(c.exit_code == 0 for c in exited):
            out[rid] = JobResult(inst.spec_hash, State.SUCCEEDED, Reason.COMPLETED, None, 0, main.id)
            continue
        matched = matching_rule(w.job, exited)
        if matched is not None and matched[0].action in ("FailJob", "FailIndex"):
            reason = Reason.POD_FAILURE_POLICY if matched[0].action == "FailJob" else Reason.FAIL_INDEX
            why = rule_message(*matched)
            out[rid] = JobResult(inst.spec_hash, State.FAILED, reason, why, matched[1].exit_code, main.id)
            continue
        if matched is not None and matched[0].action == "Ignore":
            continue  # replaced, uncounted (``ignored_failures``)
        code = exited[0].exit_code
        if code not in (0, None) and memory.total_restarts(rid) >= limit:
            tail = logs.get(exited[0].id)
            out[rid] = JobResult(inst.spec_hash, State.FAILED, Reason.BACKOFF_LIMIT, tail, code, main.id)
    return out


def ignored_failures(
    desired: Sequence[Instance], obs: Observation, finished: Mapping[ReplicaId, State]
) -> dict[ReplicaId, str]:
    """Unfinished Job indices whose failed container a podFailurePolicy Ignore rule matched."""
    out: dict[ReplicaId, str] = {}
    for inst in desired:
        if inst.workload.kind not in JOB_KINDS or inst.id in finished:
            continue
        exited = [c for c in obs.by_replica.get(inst.id, []) if c.spec_hash == inst.spec_hash and c.state != "running"]
        matched = matching_rule(inst.workload.job, exited)
        if matched is not None and matched[0].action == "Ignore":
            out[inst.id] = rule_message(*matched)
    return out


def job_failed_results(
    desired: Sequence[Instance],
    obs: Observation,
    job_failed: Mapping[ReplicaId, str],
    known: Mapping[ReplicaId, JobResult],
) -> dict[ReplicaId, JobResult]:
    """Our unfinished indices of a Job that failed as a whole: failed too, their containers stopped."""
    out: dict[ReplicaId, JobResult] = {}
    for inst in desired:
        why = job_failed.get(inst.id)
        result = known.get(inst.id)
        if why is None or (result is not None and result.spec_hash == inst.spec_hash):
            continue
        current = [c for c in obs.by_replica.get(inst.id, []) if c.spec_hash == inst.spec_hash]
        cid = current[0].id if current else None
        out[inst.id] = JobResult(inst.spec_hash, State.FAILED, Reason.JOB_FAILED, why, None, cid)
    return out


def job_deadlines(
    desired: Sequence[Instance], obs: Observation, now: float
) -> tuple[dict[ReplicaId, str], dict[ReplicaId, JobResult]]:
    """Job indices running longer than activeDeadlineSeconds: failed for good, their containers stopped."""
    stop: dict[ReplicaId, str] = {}
    results: dict[ReplicaId, JobResult] = {}
    for inst in desired:
        job = inst.workload.job
        if inst.workload.kind not in JOB_KINDS or job is None or job.active_deadline_s is None:
            continue
        running = [c for c in obs.by_replica.get(inst.id, []) if c.spec_hash == inst.spec_hash and c.state == "running"]
        started = min((obs.running_since.get(c.id, now) for c in running), default=now)
        if running and now - started > job.active_deadline_s:
            why = f"activeDeadlineSeconds {job.active_deadline_s} exceeded"
            results[inst.id] = JobResult(inst.spec_hash, State.FAILED, Reason.DEADLINE, why, None, running[0].id)
            stop[inst.id] = why
    return stop, results


def failed_indices(desired: Sequence[Instance], known: Mapping[ReplicaId, JobResult]) -> dict[ReplicaId, str]:
    """Our indices failed at their current spec, with why: containers of theirs still running (a pod's
    other containers) stop too."""
    out: dict[ReplicaId, str] = {}
    for inst in desired:
        r = known.get(inst.id)
        if r is not None and r.spec_hash == inst.spec_hash and r.state == State.FAILED:
            out[inst.id] = f"index failed ({r.reason})"
    return out


def own_results(desired: Sequence[Instance], results: Mapping[ReplicaId, JobResult]) -> dict[ReplicaId, State]:
    """Results this node recorded for the spec each instance runs now."""
    out: dict[ReplicaId, State] = {}
    for inst in desired:
        result = results.get(inst.id)
        if result is not None and result.spec_hash == inst.spec_hash:
            out[inst.id] = result.state
    return out


def present_replicas(ctx: PassContext) -> set[ReplicaId]:
    """Replicas of OrderedReady StatefulSets with a container anywhere: ours (leaving too), and live peers' rows."""
    keys = {w.key for w in ctx.manifests.workloads if w.stateful is not None and w.stateful.ordered}
    if not keys:
        return set()
    obs, view = ctx.observation, ctx.view
    present = {c.rid for c in (*obs.containers, *obs.leaving) if c.key in keys}
    for name in view.live - {ctx.node}:
        rows = view.reports[name].workloads
        present |= {r.rid for r in rows if r.key in keys and r.state != State.UNSCHEDULABLE}
    return present


def handoff_holds(
    ctx: PassContext, owners: Mapping[ReplicaId, str], by_key: Mapping[WorkloadKey, Workload], wanted: set[ReplicaId]
) -> frozenset[ReplicaId]:
    """Replicas moving away that we keep until the new owner reports them ready (make-before-break)."""
    hold: set[ReplicaId] = set()
    for rid, cs in ctx.observation.by_replica.items():
        w = by_key.get(rid.key)
        if rid in wanted or w is None or w.exclusive or not any(c.state == "running" for c in cs):
            continue
        owner = owners.get(rid)
        if owner and owner != ctx.node and not _reports_ready(ctx.view, owner, rid, w.spec_hash):
            hold.add(rid)
    return frozenset(hold)


# Peers started in the same second publish their first record up to a few seconds apart on a
# loaded host (imports, clones, a first push that must be retried): short heartbeats get this floor.
SETTLE_FLOOR_S = 5.0


# Why a fresh node's replicas wait: the message of their status rows.
SETTLING = "learning the cluster's membership first"


def _settling(row: ReplicaStatus) -> bool:
    return row.container is None and (row.message or "").startswith(SETTLING)


def settle_seconds(cluster: ClusterSpec, configured: float | None) -> float:
    """How long a fresh node watches, from its first publish, before claiming new work: by then every
    live peer, and every peer that started with it, has published (two heartbeats, at least
    ``SETTLE_FLOOR_S``), unless configured."""
    return max(2.0 * cluster.heartbeat_seconds, SETTLE_FLOOR_S) if configured is None else configured


def settle_blocks(ctx: PassContext, desired: Sequence[Instance]) -> dict[ReplicaId, str]:
    """Replicas a freshly started node does not start yet: it may not have seen its peers' claims."""
    settle = settle_seconds(ctx.manifests.cluster, ctx.settle_s)
    if ctx.uptime >= settle:
        return {}
    why = f"{SETTLING} ({settle:.0f}s after start)"
    # What our record from before a restart claimed is ours already: repaired at once. Rows that
    # only wait out a settle claim nothing: our own first record, published while settling, holds
    # them for every replica placed here, and counting them let nodes started together each start
    # their whole share of a cluster they had not seen yet.
    own = ctx.view.reports.get(ctx.node)
    claimed = {r.rid for r in own.workloads if not _settling(r)} if own is not None else set()
    by_replica = ctx.observation.by_replica
    fresh = {i.id for i in desired if i.id not in by_replica and i.id not in claimed}
    # A rollout step waits too: its gates read peers' records, and after the whole cluster
    # restarted (its records went stale meanwhile) every node would otherwise step at once.
    stepping = {i.id for i in desired if _only_old_running(by_replica.get(i.id, []), i.spec_hash)}
    return dict.fromkeys(sorted(fresh | stepping), why)


def _only_old_running(containers: Sequence[Observed], spec_hash: str) -> bool:
    """Whether a replica runs, but no container of it is at ``spec_hash`` (the next step of a rollout)."""
    return any(c.state == "running" for c in containers) and all(c.spec_hash != spec_hash for c in containers)


def surge_blocks(
    ctx: PassContext, owners: Mapping[ReplicaId, str], desired: Sequence[Instance]
) -> dict[ReplicaId, str]:
    """Moved replicas whose new copy would take a Deployment past ``replicas + maxSurge`` copies.

    A copy is a container that exists for a replica on a live node, whether serving, kept for
    a handoff or stopping. Every node derives the same candidates (replicas whose copy sits
    on a node that no longer owns them) in the same order, so they agree on which may start.
    """
    mine = {i.id for i in desired if i.workload.kind == "Deployment" and not i.workload.exclusive}
    if not mine:
        return {}
    workloads = {i.workload.key: i.workload for i in desired if i.id in mine}
    # workload -> replica -> the nodes holding a copy of it
    copies: dict[WorkloadKey, dict[ReplicaId, set[str]]] = {}
    for name in ctx.view.live - {ctx.node}:
        for r in ctx.view.reports[name].workloads:
            if r.key in workloads and r.container is not None and r.state in RUNNING_STATES:
                copies.setdefault(r.key, {}).setdefault(r.rid, set()).add(name)
    for c in (*ctx.observation.containers, *ctx.observation.leaving):
        if c.key in workloads and c.state == "running":
            copies.setdefault(c.key, {}).setdefault(c.rid, set()).add(ctx.node)
    blocked: dict[ReplicaId, str] = {}
    for key, w in sorted(workloads.items()):
        held = copies.get(key, {})
        # Moving: a copy exists, but not on the replica's owner yet.
        moving = sorted(rid for rid, nodes in held.items() if (o := owners.get(rid)) and o not in nodes)
        budget = w.replicas + max(1, w.max_surge) - sum(len(n) for n in held.values())
        for rid in moving[max(0, budget) :]:
            if rid in mine:
                blocked[rid] = f"handoff: at most {w.replicas}+{max(1, w.max_surge)} copies, waiting for a slot"
    return blocked


def exclusive_blocks(ctx: PassContext, desired: Sequence[Instance]) -> dict[ReplicaId, str]:
    """Exclusive replicas we must not start while another node may still run them (break-before-make)."""
    cluster = ctx.manifests.cluster
    gone_after = claims_expire_after(cluster.node_timeout_seconds, cluster.heartbeat_seconds)
    # A node that just started cannot know who else runs what until every live peer has
    # had a node timeout to publish a heartbeat; until then it starts no exclusive replica
    # (unless the operator set ``settle_seconds``, which then applies here too).
    settling = ctx.uptime < (cluster.node_timeout_seconds if ctx.settle_s is None else ctx.settle_s)
    blocked: dict[ReplicaId, str] = {}
    for inst in desired:
        w = inst.workload
        if not w.exclusive:
            continue
        if settling and not any(c.state == "running" for c in ctx.observation.by_replica.get(inst.id, [])):
            blocked[inst.id] = f"exclusive: {SETTLING} (one node timeout)"
            continue
        for name, report in sorted(ctx.view.reports.items()):
            if name == ctx.node or ctx.view.ages.get(name, float("inf")) > gone_after:
                continue
            for r in report.workloads:
                if r.key != w.key or r.state not in RUNNING_STATES:
                    continue
                # Recreate stops every old replica before any new one starts, cluster-wide.
                if r.replica == inst.replica or (w.strategy == "Recreate" and r.spec_hash != w.spec_hash):
                    blocked[inst.id] = f"exclusive: waiting for {name} to stop {w.name}[{r.replica}]"
    return blocked


def deadline_aborts(
    desired: Sequence[Instance], obs: Observation, memory: Memory, now: float, logs: Mapping[str, str]
) -> tuple[dict[ReplicaId, str], dict[ReplicaId, tuple[str, float]], dict[WorkloadKey, tuple[str, str]]]:
    """Replicas whose new container missed progressDeadlineSeconds while the old one still serves.

    Returns the aborts, the replicas still in flight (new spec, since when) and the halted rollouts.
    """
    aborts: dict[ReplicaId, str] = {}
    tracked: dict[ReplicaId, tuple[str, float]] = {}
    halted: dict[WorkloadKey, tuple[str, str]] = {}
    for inst in desired:
        cs = obs.by_replica.get(inst.id, [])
        current = [c for c in cs if c.spec_hash == inst.spec_hash]
        if not current or len(current) == len(cs) or all(c.id in obs.ready_ids for c in current):
            continue
        h, t0 = memory.in_flight.get(inst.id, (inst.spec_hash, now))
        if h != inst.spec_hash:
            t0 = now
        tracked[inst.id] = (inst.spec_hash, t0)
        deadline = inst.workload.progress_deadline_s
        if now - t0 > deadline:
            why = f"spec {inst.spec_hash[:8]} not ready within {deadline}s: {not_ready_why(current, obs, logs)}"
            aborts[inst.id] = why
            halted[inst.workload.key] = (inst.spec_hash, why)
    return aborts, tracked, halted


def not_ready_why(current: Sequence[Observed], obs: Observation, logs: Mapping[str, str]) -> str:
    """Why a new container is not ready: its probe's message, or how it exited."""
    for c in current:
        h: Health | None = obs.health.get(c.id)
        if h is not None and h.message:
            return f"probe: {h.message}"
        if c.state != "running":
            tail = logs.get(c.id, "").strip().replace("\n", " | ")
            return f"exit code {c.exit_code}" + (f"; log: {tail[-300:]}" if tail else "")
    return "readiness never passed"


def _all_running(obs: Observation, inst: Instance) -> bool:
    cs = obs.by_replica.get(inst.id, [])
    group = [c for c in cs if c.spec_hash == inst.spec_hash] or cs
    return bool(group) and all(c.state == "running" for c in group)


def _reports_ready(view: ClusterView, node: str, rid: ReplicaId, spec_hash: str) -> bool:
    report = view.reports.get(node)
    if report is None or node not in view.live:
        return False
    return any(r.rid == rid and r.spec_hash == spec_hash and r.state == State.READY for r in report.workloads)
