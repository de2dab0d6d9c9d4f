"""Status rows: what each replica this node runs (or ran, or cannot place) is doing."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import Workload
from gitops.reconcile.memory import Memory
from gitops.reconcile.observe import Observation
from gitops.reconcile.plan import Instance, Plan
from gitops.runtime.base import Runtime
from gitops.status import ReplicaStatus, utc_now_iso


class Reporter:
    """Turns observation, plan and memory into status rows; keeps results in memory."""

    def __init__(self, memory: Memory, runtime: Runtime):
        self.memory = memory
        self.runtime = runtime

    def rows(
        self,
        by_key: Mapping[WorkloadKey, Workload],
        desired: Sequence[Instance],
        obs: Observation,
        the_plan: Plan,
        unschedulable: Sequence[tuple[WorkloadKey, int, str]],
    ) -> list[ReplicaStatus]:
        """Every row of this node's status record."""
        self._forget_stale(by_key)
        rows = [self._replica_row(inst, obs, the_plan) for inst in desired]
        wanted = {i.id for i in desired}
        for rid, cs in sorted(obs.by_replica.items()):
            if rid not in wanted:
                reason = the_plan.waiting.get(rid, ("Terminating", ""))[0]
                state = "running" if cs[0].state == "running" else "exited"
                rows.append(self.row(rid, cs[0].spec_hash, cs[0].id, state, reason))
        # Job results stay published while their spec is current, even when the index moved away.
        emitted = {r.rid for r in rows}
        rows += [row for rid, row in self.memory.finished.items() if rid not in emitted]
        for key, idx, why in unschedulable:
            w = by_key.get(key)
            if w is not None:
                rows.append(self.row(ReplicaId(key, idx), w.spec_hash, None, "unschedulable", "Unschedulable", why))
        return rows

    def _forget_stale(self, by_key: Mapping[WorkloadKey, Workload]) -> None:
        def current(key: WorkloadKey, spec_hash: str) -> bool:
            w = by_key.get(key)
            return w is not None and w.spec_hash == spec_hash

        self.memory.finished = {rid: r for rid, r in self.memory.finished.items() if current(rid[0], r.spec_hash)}
        self.memory.rollout_failed = {
            k: v for k, v in self.memory.rollout_failed.items() if current(k, v[0]) or (k in by_key and not v[0])
        }

    def _replica_row(self, inst: Instance, obs: Observation, the_plan: Plan) -> ReplicaStatus:
        rid, w = inst.id, inst.workload
        cs = obs.by_replica.get(rid, [])
        current = [c for c in cs if c.spec_hash == inst.spec_hash]
        failed_rollout = self.memory.rollout_failed.get(w.key)
        failed_hash = failed_rollout[0] if failed_rollout and failed_rollout[0] == inst.spec_hash else None
        waiting = the_plan.waiting.get(rid)
        reason, message = waiting if waiting else (None, None)
        if failed_hash and failed_rollout:
            reason, message = "RolloutFailed", failed_rollout[1]
        finished = self.memory.finished.get(rid)
        if finished is not None and finished.spec_hash == inst.spec_hash:
            return finished  # a result is final, whatever its stopped container says now
        # Report the containers that serve: the new ones once they exist, else the old ones.
        group = current or cs
        restarts = self.memory.restarts.get(rid)
        total = restarts.total if restarts else 0
        if not group:
            if rid in self.memory.failures:
                reason, message = self.memory.failures[rid]
                return self.row(rid, inst.spec_hash, None, "failed", reason, message, restarts=total)
            return self.row(rid, inst.spec_hash, None, "starting", reason or "Pending", message)
        main = group[0]
        if rid in self.memory.failures and any(c.state == "created" for c in group):
            reason, message = self.memory.failures[rid]
            return self.row(rid, main.spec_hash, main.id, "failed", reason, message, restarts=total)
        if all(c.state == "running" for c in group):
            self.memory.healthy_for_a_while(rid, time.monotonic())
            if any(c.id in obs.unhealthy_ids for c in group):
                state = "unhealthy"
            elif all(c.id in obs.ready_ids for c in group):
                state = "ready"
            else:
                state = "running"
            msg = message or next((h.message for c in group if (h := obs.health.get(c.id)) and h.message), None)
            return self.row(rid, main.spec_hash, main.id, state, reason, msg, restarts=total, failed=failed_hash)
        exited = [c for c in group if c.state != "running"]
        code = exited[0].exit_code
        if w.kind in ("Job", "CronJob") and main.spec_hash == inst.spec_hash:
            row = self._job_row(inst, group, exited, total)
            if row is not None:
                if row.state in ("succeeded", "failed"):
                    self.memory.finished[rid] = row
                return row
        return self.row(rid, main.spec_hash, main.id, "exited", reason, message, code, total, failed_hash)

    def _job_row(
        self, inst: Instance, group: list[Observed], exited: list[Observed], restarts: int
    ) -> ReplicaStatus | None:
        rid, w = inst.id, inst.workload
        main = group[0]
        if len(exited) == len(group) and all(c.exit_code == 0 for c in exited):
            return self.row(rid, inst.spec_hash, main.id, "succeeded", "Completed", exit_code=0)
        code = exited[0].exit_code
        limit = w.job.backoff_limit if w.job else 6
        if code not in (0, None) and restarts >= limit:
            tail = self.runtime.logs_tail(exited[0].id, 10).strip()[-500:]
            return self.row(rid, inst.spec_hash, main.id, "failed", "BackoffLimitExceeded", tail, code, restarts)
        return None

    def row(
        self,
        rid: ReplicaId,
        spec_hash: str,
        cid: str | None,
        state: str,
        reason: str | None,
        message: str | None = None,
        exit_code: int | None = None,
        restarts: int = 0,
        failed: str | None = None,
    ) -> ReplicaStatus:
        ns, kind, name = rid[0].split("/", 2)
        prev = self.memory.since.get(rid)
        since = prev[1] if prev and prev[0] == state else utc_now_iso()
        self.memory.since[rid] = (state, since)
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
            failed_spec_hash=failed,
        )
