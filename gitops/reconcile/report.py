"""Status as output: one pass's observation, plan and memory rendered as this node's record. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gitops import __version__
from gitops.gpu import Gpu
from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import Workload
from gitops.placement import NodeInfo
from gitops.reconcile.memory import JobResult, Memory
from gitops.reconcile.observe import Observation
from gitops.reconcile.plan import Instance, Plan
from gitops.states import Reason, State
from gitops.status import (
    AutoscalingStatus,
    Capacity,
    ErrorStatus,
    GpuStatus,
    NodeStatus,
    PolicyStatus,
    PortStatus,
    ReplicaStatus,
    RevisionStatus,
    TaintStatus,
    utc_now_iso,
)


@dataclass(frozen=True)
class NodeFacts:
    """This node as it describes itself in every record."""

    node: str
    info: NodeInfo
    gpus: Sequence[Gpu]
    # Where peers reach this node's published ports (Service endpoints).
    address: str = ""


def render(
    facts: NodeFacts,
    revision: RevisionStatus,
    digest: str,
    live: Sequence[str],
    errors: Sequence[ErrorStatus],
    rows: Sequence[ReplicaStatus],
    now_iso: str,
    volumes: Sequence[str] = (),
    autoscaling: AutoscalingStatus | None = None,
) -> NodeStatus:
    """The whole ``status.yaml`` of this node."""
    return NodeStatus(
        node=facts.node,
        address=facts.address,
        daemon_version=__version__,
        heartbeat=now_iso,
        labels=facts.info.labels,
        taints=[
            TaintStatus(
                key=t.key,
                value=t.value,
                effect=t.effect,
                time_added=utc_now_iso(t.time_added) if t.time_added else None,
            )
            for t in facts.info.taints
        ],
        capacity=Capacity(
            cpu=facts.info.cpu_millis,
            memory=facts.info.memory_mib,
            gpus=[GpuStatus(uuid=g.uuid, model=g.model, memory=g.memory_mib) for g in facts.gpus],
        ),
        policy=None if facts.info.policy is None else PolicyStatus.model_validate(facts.info.policy.model_dump()),
        revision=revision,
        placement_digest=digest,
        live_nodes=list(live),
        errors=list(errors),
        workloads=sorted(rows, key=lambda r: (r.namespace, r.kind, r.name, r.replica)),
        volumes=list(volumes) or None,
        autoscaling=autoscaling,
    )


class _Rows:
    """Builds rows, stamping ``since`` from the previous stamps."""

    def __init__(self, previous: Mapping[ReplicaId, tuple[str, str]], now_iso: str):
        self.previous = previous
        self.now_iso = now_iso
        self.since: dict[ReplicaId, tuple[str, str]] = {}

    def row(
        self,
        rid: ReplicaId,
        spec_hash: str,
        cid: str | None,
        state: State,
        reason: str | None,
        message: str | None = None,
        exit_code: int | None = None,
        restarts: int = 0,
        failed: str | None = None,
    ) -> ReplicaStatus:
        prev = self.since.get(rid) or self.previous.get(rid)
        since = prev[1] if prev and prev[0] == state else self.now_iso
        self.since[rid] = (state, since)
        return ReplicaStatus(
            namespace=rid.key.namespace,
            kind=rid.key.kind,
            name=rid.key.name,
            replica=rid.replica,
            spec_hash=spec_hash,
            container=cid,
            state=state,
            reason=reason,
            message=message,
            exit_code=exit_code,
            restarts=restarts,
            since=since,
            failed_spec_hash=failed,
        )

    def result(self, rid: ReplicaId, r: JobResult, restarts: int = 0) -> ReplicaStatus:
        return self.row(rid, r.spec_hash, r.container, r.state, r.reason, r.message, r.exit_code, restarts)


def replica_rows(
    by_key: Mapping[WorkloadKey, Workload],
    desired: Sequence[Instance],
    obs: Observation,
    the_plan: Plan,
    memory: Memory,
    unschedulable: Sequence[tuple[WorkloadKey, int, str]],
    now_iso: str,
    denied: Sequence[tuple[WorkloadKey, int, str]] = (),
    lost: Sequence[tuple[WorkloadKey, int, str]] = (),
) -> tuple[list[ReplicaStatus], dict[ReplicaId, tuple[str, str]]]:
    """Every replica row of this node's record, and the ``since`` stamps to remember."""
    b = _Rows(memory.since, now_iso)
    rows = [_replica_row(b, inst, obs, the_plan, memory) for inst in desired]
    wanted = {i.id for i in desired}
    # Replicas not ours any more: kept (handoff, broken revision) or leaving, which still
    # counts as present until its container is gone (exclusive work, copies cluster-wide).
    others: dict[ReplicaId, list[Observed]] = {}
    for c in (*obs.containers, *obs.leaving):
        if c.rid not in wanted:
            others.setdefault(c.rid, []).append(c)
    for rid, cs in sorted(others.items()):
        up = [c for c in cs if c.state == "running"]
        main = (up or cs)[0]
        reason, message = the_plan.waiting.get(rid, (Reason.TERMINATING, ""))
        rows.append(b.row(rid, main.spec_hash, main.id, State.RUNNING if up else State.EXITED, reason, message or None))
    # Job results stay published while their spec is current, even when the index moved away.
    emitted = {r.rid for r in rows}
    rows += [b.result(rid, r) for rid, r in memory.finished.items() if rid not in emitted]
    # Never created: nowhere to go, denied by admission policy, or its volume's node is down.
    never = ((Reason.UNSCHEDULABLE, unschedulable), (Reason.POLICY_DENIED, denied), (Reason.VOLUME_NODE_LOST, lost))
    for reason, entries in never:
        for key, idx, why in entries:
            w = by_key.get(key)
            if w is not None:
                rows.append(b.row(ReplicaId(key, idx), w.spec_hash, None, State.UNSCHEDULABLE, reason, why))
    return rows, b.since


def _replica_row(b: _Rows, inst: Instance, obs: Observation, the_plan: Plan, memory: Memory) -> ReplicaStatus:
    rid = inst.id
    cs = obs.by_replica.get(rid, [])
    current = [c for c in cs if c.spec_hash == inst.spec_hash]
    halted = memory.rollout_failed.get(rid.key)
    failed_hash = halted[0] if halted and halted[0] == inst.spec_hash else None
    reason, message = the_plan.waiting.get(rid, (None, None))
    if failed_hash and halted:
        reason, message = Reason.ROLLOUT_FAILED, halted[1]
    total = memory.total_restarts(rid)
    result = memory.finished.get(rid)
    if result is not None and result.spec_hash == inst.spec_hash:
        return b.result(rid, result, total)  # a result is final, whatever its stopped container says now
    # Report the containers that serve: the new ones once they exist, else the old ones.
    group = current or cs
    failure = memory.failures.get(rid)
    if not group:
        if failure is not None:
            return b.row(rid, inst.spec_hash, None, State.FAILED, failure[0], failure[1], restarts=total)
        return b.row(rid, inst.spec_hash, None, State.STARTING, reason or Reason.PENDING, message)
    main = group[0]
    if failure is not None and any(c.state == "created" for c in group):
        return b.row(rid, main.spec_hash, main.id, State.FAILED, failure[0], failure[1], restarts=total)
    if all(c.state == "running" for c in group):
        state = _running_state(group, obs)
        msg = message or next((h.message for c in group if (h := obs.health.get(c.id)) and h.message), None)
        row = b.row(rid, main.spec_hash, main.id, state, reason, msg, restarts=total, failed=failed_hash)
        published = sorted({p for c in group for p in c.published})
        ports = [PortStatus(container_port=port, protocol=proto, host_port=host) for port, proto, host in published]
        return row.model_copy(update={"ports": ports or None})
    code = next(c.exit_code for c in group if c.state != "running")
    return b.row(rid, main.spec_hash, main.id, State.EXITED, reason, message, code, total, failed_hash)


def _running_state(group: Sequence[Observed], obs: Observation) -> State:
    if any(c.id in obs.unhealthy_ids for c in group):
        return State.UNHEALTHY
    if all(c.id in obs.ready_ids for c in group):
        return State.READY
    return State.RUNNING
