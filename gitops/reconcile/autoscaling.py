"""A node's part in autoscaling (docs/autoscaling.md): sample its replicas, decide what it owns, apply the count.

Every node samples its own replicas of autoscaled workloads and publishes their usage. One node per
autoscaler, by rendezvous hash over the live nodes, decides the count from everyone's usage and publishes
the decision with its evidence; every node applies the newest decision published, so a new decider takes
over from the last count and never from Git's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from gitops import autoscale
from gitops.autoscale import History, Usage, seeded
from gitops.gpu import GpuInventory
from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import Autoscaler, ManifestSet, Workload
from gitops.placement import rendezvous
from gitops.reconcile.observe import Observation
from gitops.runtime.base import Runtime
from gitops.runtime.cgroups import ContainerUsage
from gitops.services.nft import Backend, NftError
from gitops.status import (
    AutoscalerStatus,
    AutoscalingStatus,
    MetricStatus,
    NodeStatus,
    ScaleEventStatus,
    UsageStatus,
    utc_now_iso,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_NS_PER_MILLICORE_SECOND = 1_000_000
# A decision dated further ahead of this node's clock is ignored: it would otherwise outrank every
# later one until that time (a node with a wild clock, or a forged record).
MAX_AHEAD = timedelta(minutes=5)


def newest_decisions(reports: Iterable[NodeStatus], now: datetime) -> dict[tuple[str, str], AutoscalerStatus]:
    """(namespace, autoscaler name) -> the newest decision any record publishes (ties: the decider's name)."""
    newest: dict[tuple[str, str], AutoscalerStatus] = {}
    for report in reports:
        for d in report.autoscaling.decisions if report.autoscaling else ():
            if d.decided_at() > now + MAX_AHEAD:
                continue
            key = (d.namespace, d.name)
            have = newest.get(key)
            if have is None or (d.decided_at(), d.decider) > (have.decided_at(), have.decider):
                newest[key] = d
    return newest


def requests(workload: Workload) -> tuple[int, int]:
    """One replica's (millicores, bytes) requested, summed over its long-running containers as Kubernetes does."""
    containers = workload.pod.long_running()
    return sum(c.cpu_request_millis for c in containers), sum(c.memory_request_bytes for c in containers)


def _target(hpa: Autoscaler) -> str:
    return f"{hpa.target_kind}/{hpa.target_name}"


def scaled(
    mset: ManifestSet, reports: Mapping[str, NodeStatus], now: datetime
) -> tuple[ManifestSet, dict[str, AutoscalerStatus]]:
    """``mset`` with each autoscaled workload at the newest published count within min/max from Git, and the
    decisions applied by autoscaler key.

    Without any decision yet, Git's replicas are the starting point. An autoscaler whose document no
    longer validates keeps the count last decided, as an invalid workload keeps its last spec.
    """
    newest = newest_decisions(reports.values(), now)
    by_key = {w.key: w for w in mset.workloads}
    counts: dict[WorkloadKey, int] = {}
    applied: dict[str, AutoscalerStatus] = {}
    for hpa in mset.autoscalers:
        target = by_key.get(hpa.target)
        if target is None:
            continue
        found = newest.get((hpa.namespace, hpa.name))
        count = target.replicas
        if found is not None and found.target == _target(hpa):
            applied[hpa.key] = found
            count = found.replicas
        counts[hpa.target] = min(max(count, hpa.min_replicas), hpa.max_replicas)
    for (namespace, name), found in newest.items():
        key = f"{namespace}/HorizontalPodAutoscaler/{name}"
        if key in mset.invalid_keys:
            kind, _, target_name = found.target.partition("/")
            counts.setdefault(WorkloadKey.of(namespace, kind, target_name), found.replicas)
            applied[key] = found
    if not counts:
        return mset, applied
    workloads = tuple(
        w.model_copy(update={"replicas": counts[w.key]}) if counts.get(w.key, w.replicas) != w.replicas else w
        for w in mset.workloads
    )
    return mset.model_copy(update={"workloads": workloads}), applied


class Autoscaling:
    """What one node keeps between passes: usage samples per container and the histories of what it decides."""

    def __init__(self, node: str, window_s: float) -> None:
        self.node = node
        self.window_s = window_s
        self._samples: dict[str, list[tuple[float, ContainerUsage]]] = {}
        # GPU UUID -> (time, percent busy) samples.
        self._gpu_samples: dict[str, list[tuple[float, int]]] = {}
        # Endpoint -> (its counter's last reading, (time, connections counted since first seen) samples).
        self._connections: dict[Backend, tuple[int, list[tuple[float, int]]]] = {}
        # Per workload: new connections per second (thousandths) from this node, and its serving replicas.
        self._rates: dict[WorkloadKey, int] = {}
        self._serving: dict[WorkloadKey, int] = {}
        self._histories: dict[str, History] = {}
        # Autoscaler key -> the decision this pass applies.
        self._applied: dict[str, AutoscalerStatus] = {}

    def apply(self, mset: ManifestSet, reports: Mapping[str, NodeStatus], now: datetime) -> ManifestSet:
        """``mset`` at the published counts (``scaled``); remembers the decisions applied, to republish them."""
        mset, self._applied = scaled(mset, reports, now)
        return mset

    def sample(
        self, runtime: Runtime, gpus: GpuInventory, containers: Sequence[Observed], mset: ManifestSet, now: float
    ) -> None:
        """Read the usage of this node's running replicas of autoscaled workloads: one runtime call for all, and
        one NVML read per GPU those replicas hold where an autoscaler asks for gpu_utilization."""
        targets = {hpa.target for hpa in mset.autoscalers}
        running = [c for c in containers if c.key in targets and c.state == "running"]
        found = runtime.usage([c.id for c in running]) if running else {}
        self._samples = {cid: self._window([*self._samples.get(cid, []), (now, u)], now) for cid, u in found.items()}
        on_gpus = {hpa.target for hpa in mset.autoscalers if any(m.resource == "gpu_utilization" for m in hpa.metrics)}
        held = sorted({u for c in running if c.key in on_gpus for u in c.gpu_ids})
        busy = gpus.utilization(held) if held else {}
        self._gpu_samples = {u: self._window([*self._gpu_samples.get(u, []), (now, p)], now) for u, p in busy.items()}

    def _window(self, series: list[tuple[float, _T]], now: float) -> list[tuple[float, _T]]:
        """The samples of the last ``window_s``, but never fewer than two: passes may be further apart."""
        while len(series) > 2 and series[1][0] <= now - self.window_s:
            series.pop(0)
        return series

    def sample_connections(
        self,
        read: Callable[[], Mapping[Backend, int]],
        mset: ManifestSet,
        reports: Mapping[str, NodeStatus],
        now: float,
    ) -> None:
        """Read this node's endpoint counters (one ``nft`` call) where an autoscaler asks for requests_per_second,
        and attribute each endpoint to the replica the records publish at its address and port."""
        wanted = {
            hpa.target for hpa in mset.autoscalers if any(m.resource == "requests_per_second" for m in hpa.metrics)
        }
        counts: Mapping[Backend, int] = {}
        if wanted and mset.services:
            try:
                counts = read()
            except NftError as e:
                # No table yet (the first pass programs it after this read), or nft is missing: nothing sampled.
                log.debug("no connection counters: %s", e)
        series: dict[Backend, tuple[int, list[tuple[float, int]]]] = {}
        for backend, raw in counts.items():
            last, samples = self._connections.get(backend, (raw, []))
            # A counter below its last reading restarted with a new table: all it holds is new.
            total = (samples[-1][1] if samples else 0) + (raw - last if raw >= last else raw)
            series[backend] = (raw, self._window([*samples, (now, total)], now))
        self._connections = series
        owners = {
            (r.address, p.host_port): row.rid
            for r in reports.values()
            if r.address
            for row in r.workloads
            for p in row.ports or ()
        }
        serving: dict[WorkloadKey, set[ReplicaId]] = {}
        self._rates = {}
        for backend, (_, samples) in series.items():
            rid = owners.get((backend.address, backend.port))
            if rid is None or rid.key not in wanted:
                continue
            serving.setdefault(rid.key, set()).add(rid)
            (t0, first), (t1, last_total) = samples[0], samples[-1]
            if t1 > t0:
                self._rates[rid.key] = self._rates.get(rid.key, 0) + round(1000 * (last_total - first) / (t1 - t0))
        self._serving = {key: len(rids) for key, rids in serving.items() if key in self._rates}

    def _gpu_average(self, containers: Sequence[Observed]) -> int | None:
        """A replica's GPU utilization over the window in thousandths of a percent: the mean over its GPUs."""
        means = [
            1000 * sum(p for _, p in series) // len(series)
            for u in sorted({u for c in containers for u in c.gpu_ids})
            if (series := self._gpu_samples.get(u))
        ]
        return sum(means) // len(means) if means else None

    def _average(self, cid: str) -> tuple[int, int] | None:
        """(millicores, bytes) of one container over its window, once it has two samples."""
        series = self._samples.get(cid, [])
        if len(series) < 2 or series[-1][0] <= series[0][0]:
            return None
        (t0, first), (t1, last) = series[0], series[-1]
        cpu = max(last.cpu_ns - first.cpu_ns, 0) / (t1 - t0) / _NS_PER_MILLICORE_SECOND
        memory = sum(u.memory_bytes for _, u in series) // len(series)
        return round(cpu), memory

    def usage_rows(self, mset: ManifestSet, obs: Observation) -> list[UsageStatus]:
        """Per autoscaled workload, what this node's ready replicas with samples use together, and the connections
        this node sent to its endpoints."""
        targets = {hpa.target for hpa in mset.autoscalers}
        totals: dict[WorkloadKey, Usage] = {}
        for rid, group in sorted(obs.by_replica.items()):
            running = [c for c in group if c.state == "running"]
            if rid.key not in targets or not running or any(c.id not in obs.ready_ids for c in running):
                continue
            one = Usage()
            averages = [a for c in running if (a := self._average(c.id)) is not None]
            if averages:
                one += Usage(1, sum(cpu for cpu, _ in averages), sum(mem for _, mem in averages))
            if (gpu := self._gpu_average(running)) is not None:
                one += Usage(gpu_pods=1, gpu_milli=gpu)
            if one != Usage():
                totals[rid.key] = totals.get(rid.key, Usage()) + one
        return [
            UsageStatus(
                namespace=key.namespace,
                kind=key.kind,
                name=key.name,
                pods=u.pods,
                cpu=u.cpu_millis,
                memory=u.memory_bytes,
                gpu_pods=u.gpu_pods or None,
                gpu=u.gpu_milli if u.gpu_pods else None,
                connections=self._rates.get(key),
            )
            for key, u in sorted({**{k: Usage() for k in self._rates}, **totals}.items())
        ]

    def decisions(
        self,
        mset: ManifestSet,
        live: Sequence[str],
        reports: Mapping[str, NodeStatus],
        own: Sequence[UsageStatus],
        now: datetime,
    ) -> list[AutoscalerStatus]:
        """The decisions this node publishes: its own for the autoscalers it decides, the applied one for others.

        ``own`` is this pass's usage of this node (its published record may be a heartbeat old).
        """
        usage = [
            *own,
            *(
                u
                for n in live
                if n != self.node and (r := reports.get(n)) and r.autoscaling
                for u in r.autoscaling.usage
            ),
        ]
        by_key = {w.key: w for w in mset.workloads}
        out: list[AutoscalerStatus] = []
        # Histories of autoscalers this node no longer decides (or that are gone) are dropped.
        histories, self._histories = self._histories, {}
        for hpa in mset.autoscalers:
            target = by_key.get(hpa.target)
            applied = self._applied.get(hpa.key)
            if target is None:
                continue
            if rendezvous(hpa.key, live) != self.node:
                out += [applied] if applied is not None else []
                continue
            out.append(self._decide(hpa, target, applied, usage, histories.get(hpa.key), now))
        applied_invalid = [d for key, d in sorted(self._applied.items()) if key in mset.invalid_keys]
        return out + applied_invalid

    def _decide(
        self,
        hpa: Autoscaler,
        target: Workload,
        applied: AutoscalerStatus | None,
        rows: Sequence[UsageStatus],
        history: History | None,
        now: datetime,
    ) -> AutoscalerStatus:
        current = target.replicas
        # Serving replicas are the endpoints of this node's own table (every node's has the same), counted
        # only while it measures their connections: the other nodes' add to the total, not to the replicas.
        usage = sum(
            (
                Usage(u.pods, u.cpu, u.memory, u.gpu_pods or 0, u.gpu or 0, 0, u.connections or 0)
                for u in rows
                if (u.namespace, u.kind, u.name) == (hpa.namespace, hpa.target_kind, hpa.target_name)
            ),
            Usage(serving=self._serving.get(hpa.target, 0)),
        )
        clock = now.timestamp()
        history = history or seeded(current, clock)
        verdict, self._histories[hpa.key] = autoscale.decide(hpa, current, usage, requests(target), history, clock)
        last = applied.last_scale if applied is not None else None
        at = applied.time if applied is not None else ""
        if applied is None or applied.replicas != verdict.desired or applied.decider != self.node:
            # Later than the decision it replaces even if this node's clock is behind the last decider's.
            previous = applied.decided_at() + timedelta(seconds=1) if applied is not None else now
            at = utc_now_iso(max(now, previous))
        if verdict.desired != current:
            last = ScaleEventStatus(time=at, from_=current, to=verdict.desired, reason=verdict.reason)
        return AutoscalerStatus(
            namespace=hpa.namespace,
            name=hpa.name,
            target=_target(hpa),
            replicas=verdict.desired,
            decider=self.node,
            time=at,
            current=current,
            reason=verdict.reason,
            metrics=[
                MetricStatus(resource=r.resource, utilization=r.utilization, current=r.current, target=r.target)
                for r in verdict.readings
            ],
            last_scale=last,
        )


def status(rows: list[UsageStatus], decisions: list[AutoscalerStatus]) -> AutoscalingStatus | None:
    """The record's autoscaling section; None when there is nothing to say (records stay as they were)."""
    return AutoscalingStatus(usage=rows, decisions=decisions) if rows or decisions else None
