"""The daemon's Prometheus metrics and health (docs/operations.md, "Metrics"), in a registry of its own.

Recorded at the I/O boundaries (the reconciler, the executor), never by the pure stages. Workload
series carry ``namespace``, ``kind`` and ``name`` only (no container ids, no CronJob run names), and
the series of workloads gone from the revision are dropped, so their number stays that of workloads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gitops.cluster import ClusterView
from gitops.identity import WorkloadKey
from gitops.model import ManifestSet
from gitops.serve import Request, Response
from gitops.status import NodeStatus, ReplicaStatus
from gitops.statusview import ROLLOUT_STATES, rollout_progress

# A pass running this long is stuck: the systemd unit's WatchdogSec restarts the daemon then too.
STUCK_AFTER_S = 600.0
# Passes that crash (a bug, not an outage) this many times in a row stop feeding the systemd
# watchdog, so systemd restarts the daemon (its containers keep running), and fail /healthz.
MAX_CRASHES = 5
WORKLOAD_LABELS = ("namespace", "kind", "name")
# Passes take milliseconds when nothing changes and up to START_WAIT_S (plus pulls) when they act.
PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
GIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Per workload, so fewer: one replica's engine calls (a create and start, a pull, a graceful stop).
RECONCILE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PLACEMENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class PassHealth:
    """What ``/healthz`` and ``/readyz`` answer from: the pass in flight, the last one's reach."""

    running_since: float | None = None
    completed: int = 0
    crashes: int = 0  # in a row
    git_ok: bool = False
    engine_ok: bool = False

    def healthy(self, now: float) -> str | None:
        """Why the daemon is not healthy (a pass stuck, or crashing every time), or None."""
        since = self.running_since
        if since is not None and now - since > STUCK_AFTER_S:
            return f"pass running for {now - since:.0f}s (stuck after {STUCK_AFTER_S:.0f}s)"
        if self.crashes >= MAX_CRASHES:
            return f"{self.crashes} passes crashed in a row"
        return None

    def ready(self) -> str | None:
        """Why the daemon is not ready (no pass done yet, Git or the engine unreachable last pass), or None."""
        if not self.completed:
            return "no pass completed yet"
        if not self.git_ok:
            return "git fetch failed at the last pass"
        if not self.engine_ok:
            return "container engine unreachable at the last pass"
        return None


@dataclass(frozen=True)
class _Snapshot:
    """What the last pass saw, read at scrape time (computing it there keeps the pass cheap)."""

    manifests: ManifestSet
    view: ClusterView
    own: NodeStatus


def _workload_labels(row: ReplicaStatus) -> tuple[str, str, str]:
    # A CronJob run counts towards its CronJob: run names change every slot.
    return row.namespace, row.kind, row.cronjob or row.name


@dataclass(eq=False)  # registries key collectors by identity
class _Cluster(Collector):
    """Replicas by workload and state, and rollout state per workload, from the last pass's snapshot."""

    snapshot: _Snapshot | None = None
    node: str = ""

    def collect(self) -> Iterable[Metric]:
        """Metric families of the snapshot (none before the first pass)."""
        replicas = GaugeMetricFamily(
            "gitops_replicas", "Replicas this node runs, by workload and state.", labels=[*WORKLOAD_LABELS, "state"]
        )
        rollouts = GaugeMetricFamily(
            "gitops_rollout_state",
            "Rollout of each workload's current spec across live nodes: 1 for its state, 0 for the others.",
            labels=[*WORKLOAD_LABELS, "state"],
        )
        snap = self.snapshot
        if snap is not None:
            for (ns, kind, name, state), n in sorted(
                Tally((*_workload_labels(r), r.state) for r in snap.own.workloads).items()
            ):
                replicas.add_metric([ns, kind, name, state], n)
            for w, state in self._rollouts(snap):
                for s in ROLLOUT_STATES:
                    rollouts.add_metric([w.namespace, w.kind, w.name, s], 1.0 if s == state else 0.0)
        return [replicas, rollouts]

    def _rollouts(self, snap: _Snapshot) -> Iterator[tuple[WorkloadKey, str]]:
        reports = {**{n: snap.view.reports[n] for n in snap.view.live}, self.node: snap.own}
        rows: dict[str, list[tuple[str, ReplicaStatus]]] = {}
        for node, report in reports.items():
            for row in report.workloads:
                rows.setdefault(row.key, []).append((node, row))
        for w in snap.manifests.workloads:
            current = [(n, r) for n, r in rows.get(w.key, []) if r.spec_hash == w.spec_hash]
            state = rollout_progress(w, current)["state"]
            if state in ROLLOUT_STATES:
                yield WorkloadKey(w.key), state


@dataclass
class Metrics:
    """One daemon's instruments; every method is safe to call from any thread."""

    node: str = ""
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    health: PassHealth = field(default_factory=PassHealth)

    def __post_init__(self) -> None:
        r = self.registry
        self.pass_duration = Histogram(
            "gitops_pass_duration_seconds",
            "Duration of reconcile passes by outcome (ok, errors, failed, crashed); _count counts them.",
            ["outcome"],
            registry=r,
            buckets=PASS_BUCKETS,
        )
        self.reconcile_duration = Histogram(
            "gitops_reconcile_duration_seconds",
            "Time this node's engine calls for one replica of a workload took, per workload.",
            WORKLOAD_LABELS,
            registry=r,
            buckets=RECONCILE_BUCKETS,
        )
        self.actions = Counter(
            "gitops_actions", "Engine actions by action and result.", ["action", "result"], registry=r
        )
        self.git_duration = Histogram(
            "gitops_git_duration_seconds",
            "Duration of git fetches and pushes.",
            ["operation"],
            registry=r,
            buckets=GIT_BUCKETS,
        )
        self.git_failures = Counter("gitops_git_failures", "Failed git fetches and pushes.", ["operation"], registry=r)
        self.placement_duration = Histogram(
            "gitops_placement_duration_seconds", "Time placement took in a pass.", registry=r, buckets=PLACEMENT_BUCKETS
        )
        self.nodes_live = Gauge("gitops_nodes_live", "Live nodes as this node sees them, itself included.", registry=r)
        self.status_rejected = Gauge(
            "gitops_status_records_rejected", "Peers whose newest status record this node rejected.", registry=r
        )
        self._cluster = _Cluster(node=self.node)
        r.register(self._cluster)
        self._lock = threading.Lock()
        # workload key -> its labels, for the workloads that have reconcile_duration series
        self._reconciled: dict[str, tuple[str, str, str]] = {}

    @contextmanager
    def timed_pass(self, temporary: tuple[type[BaseException], ...]) -> Iterator[list[str]]:
        """Time a pass; the caller appends its outcome; ``temporary`` errors count as failed, others as crashed."""
        started = self.health.running_since = time.monotonic()
        outcome: list[str] = []
        try:
            yield outcome
        except temporary:
            outcome.append("failed")
            raise
        except Exception:
            outcome.append("crashed")
            raise
        finally:
            result = outcome[-1] if outcome else "crashed"
            self.health.running_since = None
            self.health.crashes = self.health.crashes + 1 if result == "crashed" else 0
            self.pass_duration.labels(result).observe(time.monotonic() - started)
        self.health.completed += 1

    @contextmanager
    def git(self, operation: str) -> Iterator[None]:
        """Time one git operation (fetch, push), counting it as failed if it raises."""
        started = time.monotonic()
        try:
            yield
        except Exception:
            self.git_failures.labels(operation).inc()
            raise
        finally:
            self.git_duration.labels(operation).observe(time.monotonic() - started)

    def action(self, op: str, result: str) -> None:
        """Count one engine action and its result (ok, failed, unavailable, superseded)."""
        self.actions.labels(op, result).inc()

    def reconciled(self, key: WorkloadKey, seconds: float) -> None:
        """Record how long one replica's engine calls took."""
        labels = (key.namespace, key.kind, key.name)
        with self._lock:
            self._reconciled[key] = labels
            self.reconcile_duration.labels(*labels).observe(seconds)

    def cluster(self, manifests: ManifestSet, view: ClusterView, own: NodeStatus, workloads: Iterable[str]) -> None:
        """Take the pass's view for scrapes, and drop the series of workloads no longer in ``workloads`` (keys)."""
        self.nodes_live.set(len(view.live | {self.node}))
        self.status_rejected.set(len(view.rejected))
        self._cluster.snapshot = _Snapshot(manifests, view, own)
        with self._lock:
            for key in self._reconciled.keys() - set(workloads):
                self.reconcile_duration.remove(*self._reconciled.pop(key))

    def serve(self, request: Request) -> Response:
        """``/metrics``, ``/healthz`` and ``/readyz``."""
        if request.method not in ("GET", "HEAD"):
            return Response(405, "method not allowed\n")
        if request.path == "/metrics":
            return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if request.path == "/healthz":
            return _verdict(self.health.healthy(time.monotonic()))
        if request.path == "/readyz":
            return _verdict(self.health.ready())
        return Response(404, "not found: /metrics, /healthz or /readyz\n")


def _verdict(problem: str | None) -> Response:
    return Response(200, "ok\n") if problem is None else Response(503, problem + "\n")
