"""One reconcile pass: source -> manifests -> cluster -> placement -> plan -> execute -> status."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gitops import __version__
from gitops.cluster import RUNNING_STATES, ClusterView, Membership
from gitops.config import Config
from gitops.desired import DesiredLoader
from gitops.gpu import Gpu, GpuInventory, assign_gpus
from gitops.manifests.types import ManifestSet, Workload
from gitops.nodefacts import node_info
from gitops.placement import Assignment, NodeInfo, place
from gitops.reconcile.execute import Executor, Outcome
from gitops.reconcile.plan import Instance, Plan, PlanInputs, ReplicaId, plan
from gitops.runtime.docker import DockerRuntime, Observed, RuntimeUnavailable
from gitops.source import GitError, GitSource
from gitops.status import (
    Capacity,
    ErrorStatus,
    GpuStatus,
    NodeStatus,
    ReplicaStatus,
    RevisionStatus,
    commit_message,
    content_key,
    dump,
    load,
    utc_now_iso,
)

log = logging.getLogger(__name__)

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0
FENCE_MARGIN_S = 2.0


class PassFailed(Exception):
    """A pass could not complete; temporary, the next pass retries."""


@dataclass
class RestartTrack:
    """Crash-loop bookkeeping for one replica."""

    total: int = 0
    streak: int = 0
    last: float = 0.0


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

    def __init__(self, config: Config, gpus: GpuInventory, runtime: DockerRuntime | None = None):
        self.config = config
        self.node = config.node
        self.source = GitSource(config.repo, config.branch, config.path, config.state_dir, config.git_timeout)
        self.runtime = runtime or DockerRuntime(config.docker_host)
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
        self._restarts: dict[ReplicaId, RestartTrack] = {}
        self._since: dict[ReplicaId, tuple[str, str]] = {}
        self._finished: dict[ReplicaId, ReplicaStatus] = {}
        self._failures: dict[ReplicaId, tuple[str, str]] = {}
        self._fetch_error: str | None = None
        self._last_push_ok = time.monotonic()
        self._heartbeat_timeout: tuple[float, float] = (10.0, 30.0)
        self._last_push_content = b""
        self._last_push_at = 0.0
        self._own_loaded = False
        self._status_cache: dict[str, NodeStatus | None] = {}

    # -- the pass --------------------------------------------------------------------------

    def run_pass(self, dry_run: bool = False) -> PassReport:
        """Do one full pass; raise PassFailed when there is no revision or no engine."""
        errors: list[ErrorStatus] = []
        # A hanging fetch must not delay fencing past the node timeout.
        self.source.timeout = min(self.config.git_timeout, max(3.0, self._heartbeat_timeout[1] / 3))
        rev = self._fetch(errors)
        mset = self.loader.load(rev)
        self._heartbeat_timeout = (mset.cluster.heartbeat_seconds, mset.cluster.node_timeout_seconds)
        errors += [ErrorStatus(file=e.file, line=e.line, field=e.field, message=str(e)) for e in mset.errors]
        view = self._cluster_view(mset.cluster.node_timeout_seconds)
        if not self._own_loaded:
            self._load_own_record(view)
        nodes = self._nodes(view, mset)
        assignment = place(mset.workloads, nodes, view.placements())
        fenced = self._fenced_keys(mset)
        desired = self._instances(mset, assignment, rev, fenced)
        try:
            observed = self.runtime.list_managed(self.node)
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        inputs = self._plan_inputs(mset, view, assignment, desired, observed, fenced)
        the_plan = plan(desired, observed, inputs)
        report = PassReport(rev, mset, assignment, the_plan, errors=errors)
        if dry_run:
            return report
        try:
            report.outcome = self.executor.execute(the_plan.actions)
            self._record_outcome(report.outcome)
            after = self.runtime.list_managed(self.node) if the_plan.actions else observed
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        status = self._status(rev, mset, view, assignment, desired, after, the_plan, errors)
        report.pushed = self._push(status, mset.cluster.heartbeat_seconds)
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

    def _load_own_record(self, view: ClusterView) -> None:
        """Recover what only our own status remembers: finished Jobs and restart counts."""
        self._own_loaded = True
        own = view.reports.get(self.node)
        if own is None:
            return
        for r in own.workloads:
            rid = (r.key, r.replica)
            if r.state in ("succeeded", "failed") and r.kind in ("Job", "CronJob"):
                self._finished[rid] = r
            if r.restarts:
                self._restarts[rid] = RestartTrack(total=r.restarts)

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
        demands = [((w.key, r), w.pod.gpu_count()) for w, r in mine if w.pod.gpu_count()]
        gpu_ids = assign_gpus(self.gpus, demands) if demands else {}
        return [Instance(w, r, rev, gpu_ids.get((w.key, r), ())) for w, r in mine]

    def _plan_inputs(
        self,
        mset: ManifestSet,
        view: ClusterView,
        assignment: Assignment,
        desired: list[Instance],
        observed: list[Observed],
        fenced: frozenset[str],
    ) -> PlanInputs:
        now = time.monotonic()
        by_key = {w.key: w for w in mset.workloads}
        wanted = {i.id for i in desired}
        hold: set[ReplicaId] = set()
        for c in observed:
            rid = (c.key, c.replica)
            w = by_key.get(c.key)
            if rid in wanted or w is None or w.exclusive or c.state != "running":
                continue
            owner = assignment.owner(rid)
            if owner and owner != self.node and not self._reports_ready(view, owner, rid, w.spec_hash):
                hold.add(rid)
        blocked: dict[ReplicaId, str] = {}
        # A predecessor counts as gone only a margin after its timeout, so that its own
        # fencing (at the timeout, by its clock) has certainly happened first.
        gone_after = mset.cluster.node_timeout_seconds + 2 * mset.cluster.heartbeat_seconds + FENCE_MARGIN_S
        for inst in desired:
            if not inst.workload.exclusive:
                continue
            for name, report in sorted(view.reports.items()):
                if name == self.node or view.ages.get(name, float("inf")) > gone_after:
                    continue
                if any((r.key, r.replica) == inst.id and r.state in RUNNING_STATES for r in report.workloads):
                    blocked[inst.id] = f"exclusive: waiting for {name} to stop it or expire"
        not_before = {rid: t.last + self._backoff(t.streak) for rid, t in self._restarts.items() if t.streak > 0}
        return PlanInputs(
            prune_allowed=not mset.errors,
            protected_keys=frozenset(mset.invalid_keys),
            hold=frozenset(hold),
            blocked=blocked,
            fenced=fenced,
            workload_keys=frozenset(by_key),
            finished={rid: r.spec_hash for rid, r in self._finished.items()},
            restart_not_before=not_before,
            now=now,
        )

    @staticmethod
    def _reports_ready(view: ClusterView, node: str, rid: ReplicaId, spec_hash: str) -> bool:
        report = view.reports.get(node)
        if report is None or node not in view.live:
            return False
        return any(
            (r.key, r.replica) == rid and r.spec_hash == spec_hash and r.state in ("ready", "running")
            for r in report.workloads
        )

    def _backoff(self, streak: int) -> float:
        return float(min(BACKOFF_START_S * 2 ** (streak - 1), BACKOFF_MAX_S) * self.config.backoff_scale)

    def _record_outcome(self, outcome: Outcome) -> None:
        now = time.monotonic()
        for rid in outcome.started:
            t = self._restarts.setdefault(rid, RestartTrack())
            t.total += 1
            t.streak += 1
            t.last = now
        for rid in outcome.failures:
            # Failed starts back off like crashes, so a broken spec is not retried every pass.
            t = self._restarts.setdefault(rid, RestartTrack())
            t.streak += 1
            t.last = now
        for rid in outcome.ran:
            self._failures.pop(rid, None)
        self._failures.update(outcome.failures)

    # -- status ----------------------------------------------------------------------------

    def _status(
        self,
        rev: str,
        mset: ManifestSet,
        view: ClusterView,
        assignment: Assignment,
        desired: list[Instance],
        observed: list[Observed],
        the_plan: Plan,
        errors: list[ErrorStatus],
    ) -> NodeStatus:
        now_mono = time.monotonic()
        by_rid: dict[ReplicaId, list[Observed]] = {}
        for c in observed:
            by_rid.setdefault((c.key, c.replica), []).append(c)
        rows: list[ReplicaStatus] = []
        for inst in desired:
            rows.append(self._replica_row(inst, by_rid.get(inst.id, []), the_plan, now_mono))
        wanted = {i.id for i in desired}
        for rid, cs in sorted(by_rid.items()):
            if rid in wanted:
                continue
            _state, reason = the_plan.waiting.get(rid, ("running", "Terminating"))
            c = cs[0]
            rows.append(self._row(rid, c.spec_hash, c.id, "running" if c.state == "running" else "exited", reason))
        live_sorted = sorted(view.live | {self.node})
        if live_sorted and live_sorted[0] == self.node:
            # One node (the first live one) speaks for replicas that fit nowhere.
            by_key = {w.key: w for w in mset.workloads}
            for key, idx, why in assignment.unschedulable:
                w = by_key.get(key)
                if w is not None:
                    rows.append(
                        ReplicaStatus(
                            namespace=w.namespace,
                            kind=w.kind,
                            name=w.name,
                            replica=idx,
                            spec_hash=w.spec_hash,
                            state="unschedulable",
                            reason="Unschedulable",
                            message=why,
                        )
                    )
        self._finished = {rid: r for rid, r in self._finished.items() if rid in wanted} | {
            (r.key, r.replica): r for r in rows if r.kind in ("Job", "CronJob") and r.state in ("succeeded", "failed")
        }
        if self._fetch_error is not None and not any("fetch failed" in e.message for e in errors):
            errors.append(ErrorStatus(message=f"fetch failed: {self._fetch_error}"))
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
            revision=RevisionStatus(sha=rev, verified=False, applied_at=utc_now_iso()),
            placement_digest=assignment.digest(rev, sorted(view.live | {self.node})),
            live_nodes=sorted(view.live | {self.node}),
            errors=errors,
            workloads=sorted(rows, key=lambda r: (r.namespace, r.kind, r.name, r.replica)),
        )

    def _replica_row(self, inst: Instance, cs: list[Observed], the_plan: Plan, now_mono: float) -> ReplicaStatus:
        rid = inst.id
        w = inst.workload
        current = [c for c in cs if c.spec_hash == inst.spec_hash]
        finished = self._finished.get(rid)
        if finished is not None and finished.spec_hash == inst.spec_hash and not current:
            return finished
        if rid in self._failures and not any(c.state == "running" for c in current):
            reason, message = self._failures[rid]
            return self._row(rid, inst.spec_hash, None, "failed", reason, message)
        if rid in the_plan.waiting and not current:
            state, why = the_plan.waiting[rid]
            return self._row(rid, inst.spec_hash, None, "starting", state, why)
        if not current:
            return self._row(rid, inst.spec_hash, None, "starting", "Pending")
        main = current[0]
        track = self._restarts.get(rid, RestartTrack())
        if all(c.state == "running" for c in current):
            if track.streak and now_mono - track.last > BACKOFF_RESET_S * self.config.backoff_scale:
                track.streak = 0
            return self._row(rid, inst.spec_hash, main.id, "ready", None, restarts=track.total)
        exited = [c for c in current if c.state != "running"]
        code = exited[0].exit_code
        if w.kind in ("Job", "CronJob"):
            if all(c.exit_code == 0 for c in exited) and len(exited) == len(current):
                return self._row(rid, inst.spec_hash, main.id, "succeeded", "Completed", exit_code=0)
            job = w.job
            if job is not None and track.total >= job.backoff_limit + 0 and code not in (0, None):
                tail = self.runtime.logs_tail(exited[0].id, 10)
                return self._row(rid, inst.spec_hash, main.id, "failed", "BackoffLimitExceeded", tail, exit_code=code)
        if rid in the_plan.waiting:
            state, why = the_plan.waiting[rid]
            return self._row(rid, inst.spec_hash, main.id, "exited", state, why, code, track.total)
        return self._row(rid, inst.spec_hash, main.id, "exited", None, None, code, track.total)

    def _row(
        self,
        rid: ReplicaId,
        spec_hash: str,
        cid: str | None,
        state: str,
        reason: str | None,
        message: str | None = None,
        exit_code: int | None = None,
        restarts: int = 0,
    ) -> ReplicaStatus:
        ns, kind, name = rid[0].split("/", 2)
        prev = self._since.get(rid)
        since = prev[1] if prev and prev[0] == state else utc_now_iso()
        self._since[rid] = (state, since)
        return ReplicaStatus(
            namespace=ns,
            kind=kind,
            name=name,
            replica=rid[1],
            spec_hash=spec_hash,
            container=cid,
            state=state,
            reason=reason,
            message=message,
            exit_code=exit_code,
            restarts=restarts,
            since=since,
        )

    def _push(self, status: NodeStatus, heartbeat_s: int) -> bool:
        key = content_key(status)
        now = time.monotonic()
        if key == self._last_push_content and now - self._last_push_at < heartbeat_s:
            return False
        try:
            self.source.push_status(self.node, dump(status), commit_message(status), self.config.status_history)
        except GitError as e:
            log.warning("status push failed: %s", e)
            return False
        self._last_push_ok = self._last_push_at = now
        self._last_push_content = key
        return True

    def next_heartbeat_in(self) -> float:
        """Seconds until a pass is due to push a heartbeat, whatever the interval."""
        return max(0.0, self._last_push_at + self._heartbeat_timeout[0] - time.monotonic())

    def close(self) -> None:
        """Release the engine connection."""
        self.runtime.close()
