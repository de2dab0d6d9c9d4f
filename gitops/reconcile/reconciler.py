"""One reconcile pass: source -> manifests -> cluster -> placement -> plan -> execute -> status."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gitops import __version__
from gitops.cluster import RELEASING_REASONS, RUNNING_STATES, ClusterView, Membership
from gitops.config import Config
from gitops.desired import DesiredLoader
from gitops.gpu import Gpu, GpuInventory, assign_gpus
from gitops.health import Prober
from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import ManifestSet, Workload
from gitops.nodefacts import node_info
from gitops.placement import Assignment, NodeInfo, place
from gitops.reconcile.cronruns import CronRuns
from gitops.reconcile.execute import Executor, Outcome
from gitops.reconcile.memory import Memory
from gitops.reconcile.observe import Observation, observe
from gitops.reconcile.plan import Instance, Plan, PlanInputs, plan
from gitops.reconcile.report import Reporter
from gitops.rollout import Gates, ReplicaView, compute_gates
from gitops.runtime.base import Runtime, RuntimeUnavailable
from gitops.runtime.docker import DockerRuntime
from gitops.source import GitError, GitSource
from gitops.status import (
    Capacity,
    ErrorStatus,
    GpuStatus,
    NodeStatus,
    RevisionStatus,
    commit_message,
    content_key,
    dump,
    load,
    utc_now_iso,
)

log = logging.getLogger(__name__)

# Margin after a peer's timeout before its exclusive replicas are taken over, so that its
# own fencing (at the timeout, by its own clock) has certainly happened first.
FENCE_MARGIN_S = 2.0


class PassFailed(Exception):
    """A pass could not complete; temporary, the next pass retries."""


@dataclass
class PassReport:
    """What one pass saw and did, for logs, ``gitops plan`` and tests."""

    revision: str
    manifests: ManifestSet
    assignment: Assignment
    plan: Plan
    outcome: Outcome | None = None
    errors: list[ErrorStatus] = field(default_factory=list)
    pushed: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed in this pass."""
        return not self.errors and not (self.outcome and self.outcome.failures)


class Reconciler:
    """Holds a node's adapters and the little memory a pass needs between runs."""

    def __init__(
        self, config: Config, gpus: GpuInventory, runtime: Runtime | None = None, prober: Prober | None = None
    ):
        self.config = config
        self.node = config.node
        self.source = GitSource(config.repo, config.branch, config.path, config.state_dir, config.git_timeout)
        self.runtime = runtime or DockerRuntime(config.docker_host)
        self.prober = prober
        self.executor = Executor(self.runtime, self.node, config.secrets_dir)
        self.loader = DesiredLoader(self.source)
        self.membership = Membership()
        self.gpus: list[Gpu] = gpus.gpus()
        self.facts: NodeInfo = node_info(
            self.node,
            config.labels,
            self.gpus,
            cpu_override=config.cpu_millis,
            memory_override_mib=config.memory_mib,
            reserve_cpu_millis=config.reserve_cpu_millis,
            reserve_memory_mib=config.reserve_memory_mib,
        )
        self.memory = Memory(backoff_scale=config.backoff_scale)
        self.reporter = Reporter(self.memory, self.runtime)
        self._recovered = False
        self._fetch_error: str | None = None
        self._last_push_ok = self._started_at = time.monotonic()
        self._last_push_at = 0.0
        self._last_push_content: dict[str, object] = {}
        self._applied: tuple[str, str] = ("", "")
        self._heartbeat_timeout: tuple[float, float] = (10.0, 30.0)
        self._status_cache: dict[str, NodeStatus | None] = {}
        self._mset: ManifestSet | None = None
        self.cron = CronRuns()

    # -- the pass --------------------------------------------------------------------------

    def run_pass(self, dry_run: bool = False) -> PassReport:
        """Do one full pass; raise PassFailed when there is no revision or no engine."""
        errors: list[ErrorStatus] = []
        # A hanging fetch must not delay fencing past the node timeout.
        self.source.timeout = min(self.config.git_timeout, max(3.0, self._heartbeat_timeout[1] / 3))
        rev = self._fetch(errors)
        mset = self._mset = self.loader.load(rev)
        self._heartbeat_timeout = (mset.cluster.heartbeat_seconds, mset.cluster.node_timeout_seconds)
        errors += [ErrorStatus(file=e.file, line=e.line, field=e.field, message=str(e)) for e in mset.errors]
        view = self._cluster_view(mset.cluster.node_timeout_seconds)
        if not self._recovered:
            self.memory.recover(view.reports.get(self.node))
            self.cron.recover(view.reports.get(self.node), mset)
            self._recovered = True
        nodes = self._nodes(view, mset)
        assignment = place(mset.workloads, nodes, view.placements())
        fenced = self._fenced_keys(mset)
        schedulable = [(n.name, n.labels) for n in nodes if not n.cordoned]
        self.cron.update(mset, self.node, schedulable, view.reports.values(), datetime.now(UTC))
        desired = self._instances(mset, assignment, rev, fenced)
        obs = self._observe(mset)
        gates = compute_gates(mset.workloads, self._replica_views(view, obs))
        inputs = self._plan_inputs(mset, view, assignment, desired, obs, fenced, gates)
        the_plan = plan(desired, obs.containers, inputs)
        report = PassReport(rev, mset, assignment, the_plan, errors=errors)
        if dry_run:
            return report
        if the_plan.actions:
            # Publish what we see before acting: peers gate their rollouts on our readiness,
            # and a pass full of removals would otherwise hold that news back.
            self._push(self._status(rev, mset, view, assignment, desired, obs, the_plan, list(errors)))
        try:
            report.outcome = self.executor.execute(the_plan.actions)
            self._record_outcome(report.outcome)
            if the_plan.actions:
                obs = self._observe(mset)
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        status = self._status(rev, mset, view, assignment, desired, obs, the_plan, errors)
        report.pushed = self._push(status)
        return report

    def _fetch(self, errors: list[ErrorStatus]) -> str:
        try:
            rev = self.source.fetch()
            if self._fetch_error:
                log.info("git source reachable again")
            self._fetch_error = None
            return rev
        except GitError as e:
            self._fetch_error = str(e)
            errors.append(ErrorStatus(message=f"fetch failed, keeping last good revision: {e}"))
            log.warning("fetch failed: %s", e)
            if not self.source.has_head():
                raise PassFailed(f"no revision fetched yet: {e}") from e
            return self.source.head()

    def _cluster_view(self, timeout_s: float) -> ClusterView:
        heads = self.source.status_heads()
        changed = {n: sha for n, sha in heads.items() if sha not in self._status_cache}
        raw = self.source.read_status_files(changed)
        for n, sha in changed.items():
            self._status_cache[sha] = load(raw[n]) if n in raw else None
        self._status_cache = {sha: self._status_cache[sha] for sha in heads.values()}
        reports = {n: r for n, sha in heads.items() if (r := self._status_cache[sha]) is not None and r.node == n}
        return self.membership.view(reports, heads, timeout_s)

    def _nodes(self, view: ClusterView, mset: ManifestSet) -> list[NodeInfo]:
        cordoned = frozenset(mset.cluster.cordoned)
        nodes = [n for n in view.node_infos(cordoned) if n.name != self.node]
        # Our own facts come from the host, not from what we last published.
        nodes.append(self.facts.model_copy(update={"cordoned": self.node in cordoned}))
        return sorted(nodes, key=lambda n: n.name)

    def _fenced_keys(self, mset: ManifestSet) -> frozenset[str]:
        """Exclusive workloads to stop because our heartbeat has not reached Git within the timeout."""
        silent = time.monotonic() - self._last_push_ok
        if silent <= mset.cluster.node_timeout_seconds:
            return frozenset()
        keys = frozenset(w.key for w in mset.workloads if w.exclusive)
        if keys:
            log.warning("fenced: no heartbeat pushed for %.0fs, stopping %s", silent, ", ".join(sorted(keys)))
        return keys

    def _instances(self, mset: ManifestSet, assignment: Assignment, rev: str, fenced: frozenset[str]) -> list[Instance]:
        by_key: dict[str, Workload] = {w.key: w for w in mset.workloads}
        mine = [(by_key[k], r) for k, r in assignment.for_node(self.node) if k in by_key and k not in fenced]
        demands = [(ReplicaId(w.key, r), w.pod.gpu_count()) for w, r in mine if w.pod.gpu_count()]
        gpu_ids = assign_gpus(self.gpus, demands) if demands else {}
        runs = [Instance(w, r, rev) for w in self.cron.workloads() for r in range(w.replicas)]
        return [Instance(w, r, rev, gpu_ids.get(ReplicaId(w.key, r), ())) for w, r in mine] + runs

    # -- observation and health ------------------------------------------------------------

    def _observe(self, mset: ManifestSet) -> Observation:
        try:
            # Containers being removed in the background are gone as far as planning goes.
            removing = self.executor.removing()
            containers = [c for c in self.runtime.list_managed(self.node) if c.id not in removing]
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        return observe(containers, (*mset.workloads, *self.cron.workloads()), self.memory, self.prober)

    def _replica_views(self, view: ClusterView, obs: Observation) -> dict[ReplicaId, ReplicaView]:
        """Every replica as the cluster reports it, with our own replicas as we see them now."""
        views: dict[ReplicaId, ReplicaView] = {}
        for name in sorted(view.reports):
            if name == self.node:
                continue
            live = name in view.live
            for r in view.reports[name].workloads:
                if r.reason in RELEASING_REASONS:
                    continue
                finished = r.state if r.state in ("succeeded", "failed") and r.kind == "Job" else None
                # Results are permanent; a dead node's running replicas are not.
                if not live and not finished:
                    continue
                rid = r.rid
                running = r.state in RUNNING_STATES
                v = ReplicaView(r.spec_hash, running, r.state == "ready", finished, r.failed_spec_hash)
                old = views.get(rid)
                if old is None or (v.running and not old.running) or (v.finished and not old.finished):
                    views[rid] = v
        for rid, row in self.memory.finished.items():
            views[rid] = ReplicaView(row.spec_hash, False, False, row.state, None)
        for rid, cs in obs.by_replica.items():
            newest = max(cs, key=lambda c: c.created)
            group = [c for c in cs if c.spec_hash == newest.spec_hash]
            failed = self.memory.rollout_failed.get(rid[0], ("", ""))[0] or None
            views[rid] = ReplicaView(
                newest.spec_hash,
                running=any(c.state == "running" for c in group),
                ready=all(c.id in obs.ready_ids for c in group),
                finished=views[rid].finished if rid in views else None,
                failed_spec_hash=failed,
            )
        return views

    # -- planning --------------------------------------------------------------------------

    def _plan_inputs(
        self,
        mset: ManifestSet,
        view: ClusterView,
        assignment: Assignment,
        desired: list[Instance],
        obs: Observation,
        fenced: frozenset[str],
        gates: Gates,
    ) -> PlanInputs:
        by_key = {w.key: w for w in mset.workloads}
        # Runs of CronJobs are ours to end whatever the revision holds: history and Replace drop them.
        runs = {c.key for c in obs.containers if c.labels.get("gitops.kind") == "CronJob"}
        deadline = self._job_deadlines(desired, obs)  # records results: before they are read below
        return PlanInputs(
            prune_allowed=not mset.errors,
            protected_keys=frozenset(mset.invalid_keys),
            workload_keys=frozenset(by_key) | runs,
            fenced=fenced,
            hold=self._handoff_holds(view, assignment, obs, by_key, {i.id for i in desired}),
            blocked=self._exclusive_blocks(mset, view, desired, obs),
            finished={**gates.finished, **self._own_results(desired)},
            deadline=deadline,
            wait=gates.wait,
            abort=self._deadline_aborts(desired, obs),
            ready_ids=obs.ready_ids,
            unhealthy_ids=obs.unhealthy_ids,
            restart_not_before=self.memory.not_before(),
            now=time.monotonic(),
        )

    def _job_deadlines(self, desired: list[Instance], obs: Observation) -> dict[ReplicaId, str]:
        """Job indices running longer than activeDeadlineSeconds: recorded as failed, to be stopped."""
        now = time.monotonic()
        out: dict[ReplicaId, str] = {}
        for inst in desired:
            job = inst.workload.job
            if inst.workload.kind not in ("Job", "CronJob") or job is None or job.active_deadline_s is None:
                continue
            running = [
                c for c in obs.by_replica.get(inst.id, []) if c.spec_hash == inst.spec_hash and c.state == "running"
            ]
            started = min((self.memory.running_since.get(c.id, now) for c in running), default=now)
            if running and now - started > job.active_deadline_s:
                why = f"activeDeadlineSeconds {job.active_deadline_s} exceeded"
                row = self.reporter.row(inst.id, inst.spec_hash, running[0].id, "failed", "DeadlineExceeded", why)
                self.memory.finished[inst.id] = row
                out[inst.id] = why
        return out

    def _own_results(self, desired: list[Instance]) -> dict[ReplicaId, str]:
        """Results this node recorded for the spec each instance runs now."""
        out: dict[ReplicaId, str] = {}
        for inst in desired:
            row = self.memory.finished.get(inst.id)
            if row is not None and row.spec_hash == inst.spec_hash:
                out[inst.id] = row.state
        return out

    def _handoff_holds(
        self,
        view: ClusterView,
        assignment: Assignment,
        obs: Observation,
        by_key: Mapping[WorkloadKey, Workload],
        wanted: set[ReplicaId],
    ) -> frozenset[ReplicaId]:
        """Replicas moving away that we keep until the new owner reports them ready (make-before-break)."""
        hold: set[ReplicaId] = set()
        owners = assignment.owners()
        for rid, cs in obs.by_replica.items():
            w = by_key.get(rid[0])
            if rid in wanted or w is None or w.exclusive or not any(c.state == "running" for c in cs):
                continue
            owner = owners.get(rid)
            if owner and owner != self.node and not _reports_ready(view, owner, rid, w.spec_hash):
                hold.add(rid)
        return frozenset(hold)

    def _exclusive_blocks(
        self, mset: ManifestSet, view: ClusterView, desired: list[Instance], obs: Observation
    ) -> dict[ReplicaId, str]:
        """Exclusive replicas we must not start while another node may still run them (break-before-make)."""
        gone_after = mset.cluster.node_timeout_seconds + 2 * mset.cluster.heartbeat_seconds + FENCE_MARGIN_S
        # A node that just started cannot know who else runs what until every live peer has
        # had a node timeout to publish a heartbeat; until then it starts no exclusive replica.
        settling = time.monotonic() - self._started_at < mset.cluster.node_timeout_seconds
        blocked: dict[ReplicaId, str] = {}
        for inst in desired:
            w = inst.workload
            if not w.exclusive:
                continue
            if settling and not any(c.state == "running" for c in obs.by_replica.get(inst.id, [])):
                blocked[inst.id] = "exclusive: learning the cluster's membership first (one node timeout)"
                continue
            for name, report in sorted(view.reports.items()):
                if name == self.node or view.ages.get(name, float("inf")) > gone_after:
                    continue
                for r in report.workloads:
                    if r.key != w.key or r.state not in RUNNING_STATES:
                        continue
                    # Recreate stops every old replica before any new one starts, cluster-wide.
                    if r.replica == inst.replica or (w.strategy == "Recreate" and r.spec_hash != w.spec_hash):
                        blocked[inst.id] = f"exclusive: waiting for {name} to stop {w.name}[{r.replica}]"
        return blocked

    def _deadline_aborts(self, desired: list[Instance], obs: Observation) -> dict[ReplicaId, str]:
        """Replicas whose new container missed progressDeadlineSeconds while the old one still serves."""
        now = time.monotonic()
        aborts: dict[ReplicaId, str] = {}
        tracked: dict[ReplicaId, tuple[str, float]] = {}
        for inst in desired:
            cs = obs.by_replica.get(inst.id, [])
            current = [c for c in cs if c.spec_hash == inst.spec_hash]
            if not current or len(current) == len(cs) or all(c.id in obs.ready_ids for c in current):
                continue
            h, t0 = self.memory.in_flight.get(inst.id, (inst.spec_hash, now))
            if h != inst.spec_hash:
                t0 = now
            tracked[inst.id] = (inst.spec_hash, t0)
            deadline = inst.workload.progress_deadline_s
            if now - t0 > deadline:
                why = f"spec {inst.spec_hash[:8]} not ready within {deadline}s: {self._not_ready_why(current, obs)}"
                aborts[inst.id] = why
                log.warning("rollout of %s halted: %s", inst.workload.key, why)
                self.memory.rollout_failed[inst.workload.key] = (inst.spec_hash, why)
        self.memory.in_flight = tracked
        return aborts

    def _not_ready_why(self, current: list[Observed], obs: Observation) -> str:
        for c in current:
            h = obs.health.get(c.id)
            if h is not None and h.message:
                return f"probe: {h.message}"
            if c.state != "running":
                tail = self.runtime.logs_tail(c.id, 5).strip().replace("\n", " | ")
                return f"exit code {c.exit_code}; log: {tail[-300:]}"
        return "readiness never passed"

    def _record_outcome(self, outcome: Outcome) -> None:
        now = time.monotonic()
        for rid in outcome.started:
            self.memory.restarted(rid, now)
        for rid in outcome.failures:
            # Failed starts back off like crashes, so a broken spec is not retried every pass.
            self.memory.restarted(rid, now, counted=False)
        for rid in outcome.ran:
            self.memory.failures.pop(rid, None)
        self.memory.failures.update(outcome.failures)

    # -- status ----------------------------------------------------------------------------

    def _status(
        self,
        rev: str,
        mset: ManifestSet,
        view: ClusterView,
        assignment: Assignment,
        desired: list[Instance],
        obs: Observation,
        the_plan: Plan,
        errors: list[ErrorStatus],
    ) -> NodeStatus:
        by_key = {w.key: w for w in (*mset.workloads, *self.cron.workloads())}
        live = sorted(view.live | {self.node})
        # One node (the first live one) speaks for replicas that fit nowhere.
        unschedulable = assignment.unschedulable if live[0] == self.node else []
        rows = self.reporter.rows(by_key, desired, obs, the_plan, unschedulable)
        if self._fetch_error is not None and not any("fetch failed" in e.message for e in errors):
            errors.append(ErrorStatus(message=f"fetch failed: {self._fetch_error}"))
        rows = [self.cron.annotate(r) for r in rows]
        return NodeStatus(
            node=self.node,
            daemon_version=__version__,
            heartbeat=utc_now_iso(),
            labels=self.facts.labels,
            capacity=Capacity(
                cpu=self.facts.cpu_millis,
                memory=self.facts.memory_mib,
                gpus=[GpuStatus(uuid=g.uuid, model=g.model, memory=g.memory_mib) for g in self.gpus],
            ),
            revision=RevisionStatus(sha=rev, verified=False, applied_at=self._applied_at(rev)),
            placement_digest=assignment.digest(rev, live),
            live_nodes=live,
            errors=errors,
            workloads=sorted(rows, key=lambda r: (r.namespace, r.kind, r.name, r.replica)),
        )

    def _applied_at(self, rev: str) -> str:
        # When this revision was first applied; a per-pass time would make every pass a change.
        if self._applied[0] != rev:
            self._applied = (rev, utc_now_iso())
        return self._applied[1]

    def _push(self, status: NodeStatus) -> bool:
        key = content_key(status)
        now = time.monotonic()
        if key == self._last_push_content and now - self._last_push_at < self._heartbeat_timeout[0]:
            return False
        try:
            sha = self.source.push_status(self.node, dump(status), commit_message(status), self.config.status_history)
        except GitError as e:
            log.warning("status push failed: %s", e)
            return False
        # The next pass reads our own branch back: it is what we just wrote, no need to parse it.
        self._status_cache[sha] = status
        self._last_push_ok = self._last_push_at = now
        self._last_push_content = key
        return True

    def next_wake_in(self) -> float:
        """Seconds until a pass is due for a heartbeat or a crash-loop restart, whatever the interval."""
        now = time.monotonic()
        due = [self._last_push_at + self._heartbeat_timeout[0] - now]
        due += [t - now for t in self.memory.not_before().values() if t > now]
        if self._mset is not None and (cron := self.cron.next_fire_in(self._mset, datetime.now(UTC))) is not None:
            due.append(cron)
        return max(0.0, min(due))

    def close(self) -> None:
        """Finish background removals and release the engine connection."""
        self.executor.close()
        self.runtime.close()


def _reports_ready(view: ClusterView, node: str, rid: ReplicaId, spec_hash: str) -> bool:
    report = view.reports.get(node)
    if report is None or node not in view.live:
        return False
    return any(r.rid == rid and r.spec_hash == spec_hash and r.state == "ready" for r in report.workloads)
