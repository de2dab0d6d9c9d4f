"""One reconcile pass: source -> manifests -> cluster -> placement -> plan -> execute -> status."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from gitops import volumes
from gitops.cluster import ClusterView, StatusBoard, claims_expire_after
from gitops.config import Config
from gitops.desired import DesiredLoader
from gitops.gpu import Gpu, GpuInventory
from gitops.health import Prober
from gitops.identity import WorkloadKey
from gitops.metrics import Metrics
from gitops.model import ManifestSet
from gitops.nodefacts import host_ip, node_info
from gitops.placement import Assignment, NodeInfo
from gitops.reconcile import autoscaling
from gitops.reconcile.autoscaling import Autoscaling
from gitops.reconcile.cronruns import CronRuns
from gitops.reconcile.execute import Executor, Outcome
from gitops.reconcile.memory import Memory, MemoryUpdate
from gitops.reconcile.observe import Observation, observe
from gitops.reconcile.plan import Action, Plan, plan
from gitops.reconcile.policy import Decision, PassContext, decide, fenced_keys, job_results, settle_seconds
from gitops.reconcile.report import NodeFacts, render, replica_rows
from gitops.runtime.base import Runtime, RuntimeUnavailable
from gitops.runtime.docker import DockerRuntime
from gitops.scheduling import stamp_taints
from gitops.secretdigest import with_secret_digests
from gitops.secrets import redactor
from gitops.services import nft
from gitops.services.proxy import ServiceProxy
from gitops.source import GitError, GitSource
from gitops.states import INIT_FAILURES
from gitops.status import (
    ErrorStatus,
    HeldStatus,
    NodeStatus,
    RevisionStatus,
    commit_message,
    content_key,
    dump,
    taints_of,
    utc_now_iso,
)
from gitops.verify import Hold, StatusSignatures, Verdict, Verifier

log = logging.getLogger(__name__)


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
        key = config.status_signing.key if config.status_signing else None  # signs our status commits
        self.source = GitSource(config.repo, config.branch, config.path, config.state_dir, config.git_timeout, key)
        self.runtime = runtime or DockerRuntime(config.docker_host)
        self.prober = prober
        self.loader = DesiredLoader(self.source)
        # Commit verification (node-local, docs/security.md); None: mode off, every tip is applied.
        self.verifier = Verifier(config.verify, self.source, config.state_dir) if config.verify.mode != "off" else None
        # Team namespaces held at an older revision than the applied one (docs/security.md).
        self.held: dict[str, Hold] = {}
        self._refusal_published: dict[str, object] = {}
        self.board = StatusBoard()
        # Status signing: a peer's commit counts only if signed by that peer (docs/security.md).
        signing = config.status_signing
        self.signatures = StatusSignatures(signing.allowed_signers, self.source) if signing else None
        self.inventory = gpus
        self.gpus: list[Gpu] = gpus.gpus()
        self.facts: NodeInfo = node_info(
            self.node,
            config.labels,
            self.gpus,
            cpu_override=config.cpu_millis,
            memory_override_mib=config.memory_mib,
            reserve_cpu_millis=config.reserve_cpu_millis,
            reserve_memory_mib=config.reserve_memory_mib,
            taints=stamp_taints(config.taints, (), datetime.now(UTC)),
        ).model_copy(update={"policy": config.policy})
        self.address = config.address or host_ip()
        self.metrics = Metrics(node=self.node)
        self.executor = Executor(
            self.runtime,
            self.node,
            config.secrets_dir,
            config.state_dir / "files",
            config.state_dir / "seccomp",
            workers=config.start_workers,
            host_ip=self.address,
            capacity=(self.facts.cpu_millis, self.facts.memory_mib * 1024 * 1024),
            metrics=self.metrics,
            storage_classes=config.storage_classes,
        )
        self.memory = Memory(backoff_scale=config.backoff_scale)
        self.services = ServiceProxy(self.node, self.address, config.state_dir)
        self._recovered = False
        self._fetch_error: str | None = None
        self._last_push_ok = time.monotonic()
        # When our first record reached Git: settling counts from there, not from process start,
        # so peers started with us on a loaded machine (slow imports, clones) have time to publish too.
        self._joined_at: float | None = None
        self._last_push_at = 0.0
        self._last_push_content: dict[str, object] = {}
        self._applied: tuple[str, str] = ("", "")
        self._heartbeat_timeout: tuple[float, float] = (10.0, 30.0)
        self._mset: ManifestSet | None = None
        self.cron = CronRuns()
        self.autoscaling = Autoscaling(self.node, config.autoscale_window_s)
        # The mirror is shared by the pass (fetch) and the heartbeat thread (push).
        self._git_lock = threading.RLock()
        self._latest: NodeStatus | None = None
        self._held_claims: list[str] = []
        self._lost: list[tuple[WorkloadKey, int, str]] = []
        self._last_push_try = 0.0
        # Why the last pass failed, published with heartbeats until a pass succeeds.
        self.pass_error: str | None = None

    # -- the pass --------------------------------------------------------------------------

    def run_pass(self, dry_run: bool = False) -> PassReport:
        """Do one full pass; raise PassFailed when there is no revision or no engine."""
        if dry_run:
            return self._pass(dry_run=True)
        with self.metrics.timed_pass(temporary=(PassFailed, GitError)) as outcome:
            report = self._pass(dry_run=False)
            outcome.append("ok" if report.ok else "errors")
        return report

    def _pass(self, dry_run: bool) -> PassReport:
        errors: list[ErrorStatus] = []
        # A hanging fetch must not delay fencing past the node timeout.
        self.source.timeout = min(self.config.git_timeout, max(3.0, self._heartbeat_timeout[1] / 3))
        with self._git_lock:
            rev = self._fetch(errors)
        mset = self._mset = with_secret_digests(
            self.loader.load(rev, {scope: h.revision for scope, h in self.held.items()}), self.config.secrets_dir
        )
        self._heartbeat_timeout = (mset.cluster.heartbeat_seconds, mset.cluster.node_timeout_seconds)
        errors += [ErrorStatus(file=e.file, line=e.line, field=e.field, message=str(e)) for e in mset.errors]
        with self._git_lock:
            view = self._cluster_view(mset.cluster.node_timeout_seconds)
        if not self._recovered:
            self.memory.recover(view.reports.get(self.node))
            self.cron.recover(view.reports.get(self.node), mset)
            self._recover_taint_times(view.reports.get(self.node))
            self._recovered = True
        # Autoscaled workloads run the newest published count, for placement and every rule after it.
        mset = self._mset = self.autoscaling.apply(mset, view.reports, datetime.now(UTC))
        nodes = self._nodes(view, mset)
        with self.metrics.placement_duration.time():
            pinned = volumes.place_pinned(
                mset.workloads,
                nodes,
                view.placements(),
                volumes.holders(view.reports, mset.releases),
                datetime.now(UTC),
            )
        assignment, self._lost = pinned.assignment, pinned.lost
        schedulable = [n for n in nodes if not n.cordoned]
        self.cron.update(mset, self.node, schedulable, view.reports.values(), datetime.now(UTC))
        # What finished since the last pass (starts, failures) counts before deciding anew.
        self._record_outcome(self.executor.collect())
        obs = self._observe(mset)
        now = time.monotonic()
        try:
            self.autoscaling.sample(self.runtime, self.inventory, obs.containers, mset, now)
            self.autoscaling.sample_connections(
                lambda: nft.read_counters(self.node, self.services.nft_path), mset, view.reports, now
            )
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        ctx = PassContext(
            node=self.node,
            revision=rev,
            manifests=mset,
            view=view,
            assignment=assignment,
            observation=obs,
            memory=self.memory,
            gpus=self.gpus,
            cron_runs=self.cron.workloads(),
            now=now,
            silent_for=now - self._last_push_ok,
            # A plan asks what the long-running daemon would do, not a process that just started.
            uptime=float("inf") if dry_run else self._uptime(now),
            settle_s=self.config.settle_seconds,
            busy=self.executor.busy(),
            logs=self._logs(obs),
            policy=self.config.policy,
            drain_s=self.config.drain_s,
        )
        decision = decide(ctx)
        the_plan = plan(decision.desired, obs.containers, decision.inputs)
        report = PassReport(rev, mset, assignment, the_plan, errors=errors)
        if dry_run:
            return report
        self.executor.files.sweep({c.name for c in (*obs.containers, *obs.leaving)})
        self.memory.apply(decision.update)
        self.memory.draining = the_plan.draining
        self.executor.supersede({i.id: i.spec_hash for i in decision.desired})
        self.executor.services = mset.services
        self.executor.claim_classes = {
            volumes.claim_id(c.namespace, c.name): c.storage_class for c in mset.claims if c.storage_class
        }
        # Names are served before containers start, so a pod created in this pass resolves them.
        self.executor.dns_ip = self.services.serve_names(mset, errors)
        if decision.fenced:
            log.warning(
                "fenced: no heartbeat pushed for %.0fs, stopping %s", ctx.silent_for, ", ".join(sorted(decision.fenced))
            )
        for key, (_, why) in decision.update.rollout_failed.items():
            log.warning("rollout of %s halted: %s", key, why)
        try:
            report.outcome = self.executor.execute(the_plan.actions)
            self._record_outcome(report.outcome)
            if the_plan.actions:
                obs = self._observe(mset)
                # What the actions led to is reported now, Job results included, not a pass later.
                ctx = replace(ctx, observation=obs, logs=self._logs(obs))
                self.memory.apply(MemoryUpdate(results=job_results(decision.desired, obs, self.memory, ctx.logs)))
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        self._held_claims = self._claims(mset)
        self._latest = self._status(ctx, decision, the_plan, errors)
        self.metrics.cluster(mset, view, self._latest, [w.key for w in (*mset.workloads, *ctx.cron_runs)])
        if (problem := self.services.sync(mset, view, self._latest, ctx.observation.containers)) is not None:
            self._latest.errors.append(ErrorStatus(field="services", message=problem))
        report.pushed = self._push(self._latest)
        self.pass_error = None
        return report

    def _fetch(self, errors: list[ErrorStatus]) -> str:
        try:
            with self.metrics.git("fetch"):
                rev = self.source.fetch()
            if self._fetch_error:
                log.info("git source reachable again")
            self._fetch_error = None
            self.metrics.health.git_ok = True
        except GitError as e:
            self._fetch_error = str(e)
            self.metrics.health.git_ok = False
            errors.append(ErrorStatus(message=f"fetch failed, keeping last good revision: {e}"))
            log.warning("fetch failed: %s", e)
            if not self.source.has_head():
                raise PassFailed(f"no revision fetched yet: {e}") from e
            rev = self.source.head()
        return rev if self.verifier is None else self._verify(rev, errors)

    def _verify(self, tip: str, errors: list[ErrorStatus]) -> str:
        """The tip if its commits verify, else the last verified revision (docs/security.md)."""
        assert self.verifier is not None
        try:
            verdict = self.verifier.check(tip)
        except GitError as e:
            verdict = Verdict(tip, problem=str(e))
        if verdict.ok:
            for scope, hold in sorted(verdict.held.items()):
                if self.held.get(scope) != hold:
                    log.warning(
                        "namespace %s held at %s: commit %s: %s", scope, hold.revision[:12], hold.commit, hold.why
                    )
            self.held = dict(verdict.held)
            return tip
        self.held = self.verifier.held()
        keep = self.verifier.last_verified()
        why = verdict.message(keep)
        errors.append(ErrorStatus(field="verify", message=why))
        log.warning("%s", why)
        if keep is None:
            self._publish_refusal(errors)
            raise PassFailed(why)
        return keep

    def _publish_refusal(self, errors: list[ErrorStatus]) -> None:
        """Say why nothing is applied yet, in a record without a heartbeat: peers never count it live."""
        facts = NodeFacts(self.node, self.facts, self.gpus, self.address)
        status = render(facts, RevisionStatus(), "", [], errors, [], now_iso="")
        key = content_key(status)
        if key == self._refusal_published:
            return
        try:
            with self.metrics.git("push"):
                self.source.push_status(self.node, dump(status), commit_message(status), self.config.status_history)
            self._refusal_published = key
        except GitError as e:
            log.warning("status push failed: %s", e)

    def _cluster_view(self, timeout_s: float) -> ClusterView:
        # A peer's last good record outlives a vanished or broken branch as long as it claims anything.
        keep_s = claims_expire_after(timeout_s, self._heartbeat_timeout[0])
        return self.board.view(
            self.source.status_heads(), self.source.read_status_files, timeout_s, keep_s, verify=self.signatures
        )

    def _recover_taint_times(self, own: NodeStatus | None) -> None:
        """A NoExecute taint we published before keeps its timeAdded across restarts: tolerationSeconds run on."""
        if own is not None:
            # The record's time wins over the one stamped at start (later entries win in stamp_taints).
            earlier = (*self.facts.taints, *taints_of(own))
            taints = stamp_taints(self.config.taints, earlier, datetime.now(UTC))
            self.facts = self.facts.model_copy(update={"taints": taints})

    def _nodes(self, view: ClusterView, mset: ManifestSet) -> list[NodeInfo]:
        cordoned = frozenset(mset.cluster.cordoned)
        nodes = [n for n in view.node_infos(cordoned) if n.name != self.node]
        # Our own facts come from the host, not from what we last published.
        nodes.append(self.facts.model_copy(update={"cordoned": self.node in cordoned}))
        return sorted(nodes, key=lambda n: n.name)

    # -- observation and health ------------------------------------------------------------

    def _observe(self, mset: ManifestSet) -> Observation:
        try:
            leaving = self.executor.leaving()
            containers = self.runtime.list_managed(self.node)
        except RuntimeUnavailable as e:
            self.metrics.health.engine_ok = False
            raise PassFailed(str(e)) from e
        self.metrics.health.engine_ok = True
        workloads = (*mset.workloads, *self.cron.workloads())
        obs = observe(containers, workloads, self.memory.running_since, self.prober, time.monotonic(), leaving)
        self.memory.running_since = obs.running_since
        return obs

    def _claims(self, mset: ManifestSet) -> list[str]:
        """The claims whose volumes are on this node; deletes those whose documents are gone from the repository."""
        try:
            listed = self.runtime.list_volumes(volumes.held_filters(self.node))
            found = volumes.held(listed)
            for claim in volumes.deleted(listed, mset):
                log.warning("deleting the volume of PersistentVolumeClaim %s: its document or owner is gone", claim)
                # A volume still mounted stays (Docker refuses); it goes on a later pass.
                self.runtime.remove_volumes(volumes.claim_filters(self.node, claim))
        except RuntimeUnavailable as e:
            raise PassFailed(str(e)) from e
        return found

    def _record_outcome(self, outcome: Outcome) -> None:
        now = time.monotonic()
        for rid in outcome.started:
            self.memory.restarted(rid, now)
        for rid, (reason, _) in outcome.failures.items():
            # Failed starts back off like crashes, so a broken spec is not retried every pass; a
            # failed init container counts as a restart, towards a Job's backoffLimit too.
            self.memory.restarted(rid, now, counted=reason in INIT_FAILURES)
        for rid in outcome.ran:
            self.memory.failures.pop(rid, None)
        self.memory.failures.update(outcome.failures)

    # -- status ----------------------------------------------------------------------------

    def _logs(self, obs: Observation) -> dict[str, str]:
        """Output of exited containers, only where this node opts in to publishing it."""
        failed = [c for c in obs.containers if c.state != "running" and c.exit_code not in (0, None)]
        if not self.config.status_logs or not failed:
            return {}
        mask = redactor(self.config.secrets_dir)
        return {c.id: mask(self.runtime.logs_tail(c.id, 10)) for c in failed}

    def _status(self, ctx: PassContext, decision: Decision, the_plan: Plan, errors: list[ErrorStatus]) -> NodeStatus:
        """Render this node's record from the pass's observation and plan: once per pass."""
        by_key = {w.key: w for w in (*ctx.manifests.workloads, *ctx.cron_runs)}
        live = sorted(ctx.view.live | {self.node})
        # One node (the first live one) speaks for replicas that fit nowhere or no node admits.
        speaks = live[0] == self.node
        unschedulable = ctx.assignment.unschedulable if speaks else []
        lost = self._lost if speaks else []
        denied = [
            *(ctx.assignment.denied if speaks else []),
            *((r.key, r.replica, w) for r, w in decision.denied.items()),
        ]
        now_iso = utc_now_iso()
        rows, self.memory.since = replica_rows(
            by_key, decision.desired, ctx.observation, the_plan, self.memory, unschedulable, now_iso, denied, lost
        )
        if self._fetch_error is not None and not any("fetch failed" in e.message for e in errors):
            errors.append(ErrorStatus(message=f"fetch failed: {self._fetch_error}"))
        verified = self.verifier is not None and ctx.revision == self.verifier.last_verified()
        held = [
            HeldStatus(namespace=scope, sha=h.revision, commit=h.commit, signer=h.signer, reason=h.why)
            for scope, h in sorted(self.held.items())
        ]
        revision = RevisionStatus(
            sha=ctx.revision, verified=verified, applied_at=self._applied_at(ctx.revision), held=held or None
        )
        facts = NodeFacts(self.node, self.facts, self.gpus, self.address)
        digest = ctx.assignment.digest(ctx.revision, live)
        rows = [self.cron.annotate(r) for r in rows]
        usage = self.autoscaling.usage_rows(ctx.manifests, ctx.observation)
        decisions = self.autoscaling.decisions(ctx.manifests, live, ctx.view.reports, usage, datetime.now(UTC))
        scaling = autoscaling.status(usage, decisions)
        return render(facts, revision, digest, live, errors, rows, now_iso, self._held_claims, scaling)

    def _applied_at(self, rev: str) -> str:
        # When this revision was first applied; a per-pass time would make every pass a change.
        if self._applied[0] != rev:
            self._applied = (rev, utc_now_iso())
        return self._applied[1]

    def _push(self, status: NodeStatus, force: bool = False) -> bool:
        """Publish ``status`` when it changed or a heartbeat is due (``force``: now)."""
        with self._git_lock:
            key = content_key(status)
            now = self._last_push_try = time.monotonic()
            if not force and key == self._last_push_content and now - self._last_push_at < self._heartbeat_timeout[0]:
                return False
            try:
                with self.metrics.git("push"):
                    sha = self.source.push_status(
                        self.node, dump(status), commit_message(status), self.config.status_history
                    )
            except GitError as e:
                log.warning("status push failed: %s", e)
                return False
            # The next pass reads our own branch back: it is what we just wrote, no need to parse it.
            self.board.remember(self.node, sha, status)
            self._last_push_ok = self._last_push_at = now
            if self._joined_at is None:
                self._joined_at = now
            self._last_push_content = key
            return True

    def heartbeat(self) -> bool:
        """Re-publish the last pass's record with a fresh heartbeat once one is due; True if pushed.

        Runs on its own timer, so engine work, slow pulls or a stuck pass never silence a live
        node; it also says why passes are failing, and fences exclusive work when Git is unreachable.
        """
        self._fence_if_silent()
        every, _ = self._heartbeat_timeout
        now = time.monotonic()
        # Heartbeats between passes come from here, not from a pass: one push, no fetch and no
        # reading of every peer's record, so the Git server's load per heartbeat does not grow
        # with the number of nodes (docs/benchmarks.md, many nodes).
        if self._latest is None or now - self._last_push_at < every or now - self._last_push_try < 1.0:
            return False
        errors = list(self._latest.errors)
        if self.pass_error:
            errors.append(ErrorStatus(message=f"pass failing: {self.pass_error}"))
        return self._push(self._latest.model_copy(update={"heartbeat": utc_now_iso(), "errors": errors}), force=True)

    def _fence_if_silent(self) -> None:
        mset = self._mset
        silent = time.monotonic() - self._last_push_ok
        keys = fenced_keys(mset, silent) if mset is not None else frozenset()
        if not keys:
            return
        leaving = self.executor.leaving()
        try:
            targets = [c for c in self.runtime.list_managed(self.node) if c.key in keys and c.id not in leaving]
        except RuntimeUnavailable as e:
            log.warning("cannot fence: %s", e)
            return
        why = f"fenced: no heartbeat reached Git for {silent:.0f}s"
        if targets:
            log.warning("%s, stopping %s", why, ", ".join(sorted({str(c.rid) for c in targets})))
            # Submitted only: the outcomes of the pass's own actions stay for the pass to collect.
            self.executor.submit([Action("remove", c.rid, why, target=c) for c in targets])

    def _uptime(self, now: float) -> float:
        """Seconds since our first record reached Git; zero until it has."""
        return 0.0 if self._joined_at is None else now - self._joined_at

    def next_wake_in(self) -> float:
        """Seconds until a pass is due for settling, a crash-loop restart or a CronJob, at most the interval."""
        now = time.monotonic()
        due = [self.config.interval]
        settle = settle_seconds(self._mset.cluster, self.config.settle_seconds) if self._mset else 0.0
        if self._joined_at is not None and self._uptime(now) < settle:
            due.append(self._joined_at + settle - now)
        due += [t - now for t in self.memory.not_before().values() if t > now]
        if self._mset is not None and (cron := self.cron.next_fire_in(self._mset, datetime.now(UTC))) is not None:
            due.append(cron)
        return max(0.0, min(due))

    def close(self) -> None:
        """Finish what is in flight, stop the DNS server and release the engine connection."""
        self.services.stop()
        self.executor.close()
        self.runtime.close()
