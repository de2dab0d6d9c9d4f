"""Status as output: rows rendered from observation, plan and memory; nothing is written back."""

from __future__ import annotations

from gitops.identity import ReplicaId
from gitops.reconcile.memory import JobResult, Memory, RestartTrack
from gitops.reconcile.observe import observe
from gitops.reconcile.plan import Instance, Plan
from gitops.reconcile.report import replica_rows
from gitops.states import Reason, State
from gitops.status import ReplicaStatus
from tests.builders import observed, workload

T1, T2 = "2026-12-01T10:00:00Z", "2026-12-01T10:00:05Z"


def rows_of(memory: Memory, insts: list[Instance], containers: list, plan: Plan | None = None, now: str = T1):  # type: ignore[no-untyped-def]
    ws = {i.workload.key: i.workload for i in insts}
    obs = observe(containers, ws.values(), {}, None, 0.0)
    return replica_rows(ws, insts, obs, plan or Plan(), memory, [], now)


def states(rows: list[ReplicaStatus]) -> list[tuple[int, str, str | None]]:
    return [(r.replica, r.state, r.reason) for r in sorted(rows, key=lambda r: r.replica)]


def test_states_follow_what_is_observed() -> None:
    w = workload("web", 4)
    insts = [Instance(w, r, "rev") for r in range(4)]
    cs = [observed(w, 0), observed(w, 1, "exited", exit_code=2), observed(w, 2, "created")]
    rows, _ = rows_of(Memory(failures={ReplicaId(w.key, 2): ("RunFailed", "port in use")}), insts, cs)
    assert states(rows) == [
        (0, State.READY, None),  # running, no readiness probe
        (1, State.EXITED, None),
        (2, State.FAILED, "RunFailed"),
        (3, State.STARTING, Reason.PENDING),
    ]
    assert rows[1].exit_code == 2


def test_since_moves_only_when_the_state_does_and_memory_is_not_written() -> None:
    w = workload("web")
    inst = [Instance(w, 0, "rev")]
    memory = Memory()
    rows, since = rows_of(memory, inst, [observed(w, 0)], now=T1)
    assert memory.since == {} and rows[0].since == T1
    memory.since = since
    rows, since = rows_of(memory, inst, [observed(w, 0)], now=T2)
    assert rows[0].since == T1
    memory.since = since
    rows, _ = rows_of(memory, inst, [observed(w, 0, "exited", exit_code=1)], now=T2)
    assert rows[0].since == T2


def test_results_are_final_and_outlive_their_index_moving_away() -> None:
    job = workload("pi", 2, kind="Job")
    rid0, rid1 = ReplicaId(job.key, 0), ReplicaId(job.key, 1)
    memory = Memory(
        finished={
            rid0: JobResult(job.spec_hash, State.SUCCEEDED, Reason.COMPLETED, None, 0, "c0"),
            rid1: JobResult(job.spec_hash, State.FAILED, Reason.BACKOFF_LIMIT, None, 3, "c1"),
        },
        restarts={rid0: RestartTrack(total=1)},
    )
    # Index 0 is still ours (its container now says running: the result wins); index 1 moved away.
    rows, _ = rows_of(memory, [Instance(job, 0, "rev")], [observed(job, 0)])
    assert states(rows) == [(0, State.SUCCEEDED, Reason.COMPLETED), (1, State.FAILED, Reason.BACKOFF_LIMIT)]
    assert (rows[0].restarts, rows[1].exit_code) == (1, 3)


def test_replicas_not_wanted_report_why_they_are_kept() -> None:
    w = workload("web", 2)
    plan = Plan(waiting={ReplicaId(w.key, 1): (Reason.HANDOFF, "kept")})
    rows, _ = rows_of(Memory(), [Instance(w, 0, "rev")], [observed(w, 0), observed(w, 1)], plan)
    assert states(rows) == [(0, State.READY, None), (1, State.RUNNING, Reason.HANDOFF)]


def test_a_halted_rollout_is_named_on_the_replica_at_the_failed_spec() -> None:
    w = workload("web", version="b")
    memory = Memory(rollout_failed={w.key: (w.spec_hash, "not ready within 30s")})
    old = observed(workload("web", version="a"), 0)
    rows, _ = rows_of(memory, [Instance(w, 0, "rev")], [old])
    assert (rows[0].reason, rows[0].message, rows[0].failed_spec_hash) == (
        Reason.ROLLOUT_FAILED,
        "not ready within 30s",
        w.spec_hash,  # peers read it to halt the same rollout on their replicas
    )


def test_denied_replicas_are_reported_as_policy_denied_never_created() -> None:
    w = workload("p")
    rows, _ = replica_rows(
        {w.key: w}, [], observe([], [w], {}, None, 0.0), Plan(), Memory(), [], T1, [(w.key, 0, "why")]
    )
    assert [(r.replica, r.state, r.reason, r.message, r.container) for r in rows] == [
        (0, State.UNSCHEDULABLE, Reason.POLICY_DENIED, "why", None)
    ]
