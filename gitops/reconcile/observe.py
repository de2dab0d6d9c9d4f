"""Observe: this node's containers, grouped per replica, with the health its probes report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gitops.health import Health, Prober, ProbeTarget
from gitops.identity import Observed, ReplicaId
from gitops.model import Workload

NO_HEALTH = Health(ready=True, live=True, started=True, message="", consecutive_failures=0)


@dataclass
class Observation:
    """Containers of this node grouped per replica, with their health."""

    containers: list[Observed]
    by_replica: dict[ReplicaId, list[Observed]]
    ready_ids: frozenset[str]
    unhealthy_ids: frozenset[str]
    health: dict[str, Health]
    # container id -> monotonic time first seen running (probe delays, Job deadlines)
    running_since: dict[str, float]
    # Containers being stopped and removed: not planned for, still reported (they still run).
    leaving: list[Observed] = field(default_factory=list)


def observe(
    containers: list[Observed],
    workloads: Iterable[Workload],
    running_since: Mapping[str, float],
    prober: Prober | None,
    now: float,
    leaving: frozenset[str] = frozenset(),
) -> Observation:
    """Group containers per replica and ask the prober about the running ones."""
    gone = [c for c in containers if c.id in leaving]
    containers = [c for c in containers if c.id not in leaving]
    by_replica: dict[ReplicaId, list[Observed]] = {}
    for c in containers:
        # Init containers are the executor's business while they run; a replica is its other containers.
        if c.role != "init":
            by_replica.setdefault(c.rid, []).append(c)
    running = {c.id: c for c in containers if c.state == "running"}
    since = {cid: running_since.get(cid, now) for cid in running}
    health = _probe(workloads, running, since, prober) if prober is not None else {}
    ready = frozenset(cid for cid in running if health.get(cid, NO_HEALTH).ready)
    unhealthy = frozenset(cid for cid in running if not health.get(cid, NO_HEALTH).live)
    return Observation(containers, by_replica, ready, unhealthy, health, since, gone)


def _probe(
    workloads: Iterable[Workload], running: Mapping[str, Observed], since: Mapping[str, float], prober: Prober
) -> dict[str, Health]:
    specs = {(w.key, w.spec_hash): w for w in workloads}
    targets: dict[str, ProbeTarget] = {}
    for cid, c in running.items():
        w = specs.get((c.key, c.spec_hash))
        spec = next((s for s in w.pod.long_running() if s.name == c.container), None) if w else None
        if w is None or spec is None or not (spec.liveness or spec.readiness or spec.startup):
            continue
        targets[cid] = ProbeTarget(
            liveness=spec.liveness,
            readiness=spec.readiness,
            startup=spec.startup,
            started_at=since[cid],
            host="127.0.0.1" if w.pod.host_network else None,
        )
    prober.sync(targets)
    return {cid: prober.result(cid) for cid in targets}
