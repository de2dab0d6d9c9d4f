"""Job policy: suspend, podFailurePolicy, maxFailedIndexes and ttlSecondsAfterFinished, inputs -> decisions."""

from __future__ import annotations

from gitops.identity import ReplicaId
from gitops.model import ContainerSpec, FailureRule, JobSpec, PodSpec, Workload
from gitops.reconcile.memory import JobResult, Memory, RestartTrack
from gitops.reconcile.plan import Instance, PlanInputs, plan
from gitops.states import Reason, State
from tests.builders import observed, workload
from tests.unit.reconcile.test_policy import NOW, row, run


def indexed(n: int = 3, **job: object) -> Workload:
    return workload("shard", n, kind="Job", job=JobSpec(completions=n, parallelism=n, indexed=True, **job))


def rid(w: Workload, r: int) -> ReplicaId:
    return ReplicaId(w.key, r)


FAIL_JOB_ON_42 = FailureRule(action="FailJob", operator="In", values=(42,))


def test_a_suspended_job_starts_nothing_and_stops_what_runs() -> None:
    w = indexed(suspend=True)
    peers = {"n2": [row(w, 0, "succeeded")]}
    d = run([w], mine=[(w, 1), (w, 2)], containers=[observed(w, 1)], peers=peers, others={"n2": [(w, 0)]})
    assert d.inputs.suspended == {rid(w, 1): "Job suspended (spec.suspend)", rid(w, 2): "Job suspended (spec.suspend)"}
    assert rid(w, 0) in d.inputs.finished, "a finished index stays finished"
    p = plan(d.desired, [observed(w, 1)], d.inputs)
    assert [(a.op, a.replica.replica) for a in p.actions] == [("remove", 1)]
    assert p.waiting[rid(w, 2)][0] == Reason.SUSPENDED
    # Resumed: the unfinished indices start again.
    resumed = indexed()
    d = run([resumed], mine=[(resumed, 1), (resumed, 2)], peers=peers, others={"n2": [(resumed, 0)]})
    assert not d.inputs.suspended
    assert [(a.op, a.replica.replica) for a in plan(d.desired, [], d.inputs).actions] == [("run", 1), ("run", 2)]


def test_fail_job_rule_fails_the_index_and_ends_the_others() -> None:
    w = indexed(failure_rules=(FAIL_JOB_ON_42,))
    failed, other = observed(w, 0, "exited", exit_code=42), observed(w, 1)
    d = run([w], mine=[(w, 0), (w, 1)], containers=[failed, other])
    result = d.update.results[rid(w, 0)]
    assert (result.state, result.reason, result.exit_code) == (State.FAILED, Reason.POD_FAILURE_POLICY, 42)
    assert "podFailurePolicy FailJob" in (result.message or "")
    ended = d.update.results[rid(w, 1)]
    assert (ended.state, ended.reason) == (State.FAILED, Reason.JOB_FAILED)
    assert d.inputs.stop[rid(w, 1)] == "index failed (JobFailed)"
    actions = plan(d.desired, [failed, other], d.inputs).actions
    assert [(a.op, a.replica.replica) for a in actions] == [("stop", 1)]


def test_a_fail_job_reported_by_a_peer_ends_our_indices() -> None:
    w = indexed(failure_rules=(FAIL_JOB_ON_42,))
    peers = {"n2": [row(w, 0, "failed", reason="PodFailurePolicy")]}
    d = run([w], mine=[(w, 1), (w, 2)], containers=[observed(w, 1)], peers=peers, others={"n2": [(w, 0)]})
    assert {r.replica for r in d.inputs.stop} == {1, 2}
    assert {r.replica: v.reason for r, v in d.update.results.items()} == {1: Reason.JOB_FAILED, 2: Reason.JOB_FAILED}
    # A plain failed index (out of retries) does not end the Job.
    peers = {"n2": [row(w, 0, "failed", reason="BackoffLimitExceeded")]}
    d = run([w], mine=[(w, 1), (w, 2)], peers=peers, others={"n2": [(w, 0)]})
    assert not d.inputs.stop and not d.update.results


def test_fail_index_fails_only_that_index() -> None:
    w = indexed(backoff_limit=5, failure_rules=(FailureRule(action="FailIndex", operator="NotIn", values=(1,)),))
    d = run([w], mine=[(w, 0), (w, 1)], containers=[observed(w, 0, "exited", exit_code=7), observed(w, 1)])
    assert d.update.results[rid(w, 0)].reason == Reason.FAIL_INDEX
    assert rid(w, 1) not in d.update.results and rid(w, 1) not in d.inputs.stop
    # Exit code 1 is not matched: counted toward the index's backoff as usual.
    d = run([w], mine=[(w, 0)], containers=[observed(w, 0, "exited", exit_code=1)])
    assert not d.update.results


def test_rules_match_in_order_and_by_container() -> None:
    rules = (
        FailureRule(action="Count", operator="In", values=(42,), container="other"),
        FailureRule(action="Ignore", operator="In", values=(42,)),
        FAIL_JOB_ON_42,
    )
    w = indexed(backoff_limit=0, failure_rules=rules)
    c = observed(w, 0, "exited", exit_code=42)
    memory = Memory(restarts={rid(w, 0): RestartTrack(total=3)})
    d = run([w], mine=[(w, 0)], containers=[c], memory=memory)
    # Ignore (the first rule for container main) wins over FailJob, and over the spent backoff.
    assert not d.update.results
    assert d.inputs.replace == {rid(w, 0): "container main exited with code 42: podFailurePolicy Ignore"}
    actions = plan(d.desired, [c], d.inputs).actions
    assert [a.op for a in actions] == ["remove", "run"], "a new container, not a counted restart"


def test_more_failed_indexes_than_allowed_fail_the_job() -> None:
    w = indexed(4, max_failed_indexes=1)
    peers = {"n2": [row(w, 0, "failed", reason="BackoffLimitExceeded")]}
    d = run([w], mine=[(w, 2), (w, 3)], peers=peers, others={"n2": [(w, 0), (w, 1)]})
    assert not d.inputs.stop
    peers["n2"].append(row(w, 1, "failed", reason="FailIndex"))
    d = run([w], mine=[(w, 2), (w, 3)], peers=peers, others={"n2": [(w, 0), (w, 1)]})
    assert "more than maxFailedIndexes 1" in (d.update.results[rid(w, 2)].message or "")
    assert rid(w, 2) in d.inputs.stop


def done(w: Workload, *indices: int) -> Memory:
    return Memory(
        finished={
            rid(w, r): JobResult(w.spec_hash, State.SUCCEEDED, Reason.COMPLETED, container=f"c{r}") for r in indices
        }
    )


def test_ttl_counts_from_when_every_index_finished() -> None:
    w = indexed(2, ttl_after_finished_s=60)
    containers = [observed(w, 0, "exited", exit_code=0), observed(w, 1, "exited", exit_code=0)]
    # Index 1 still unfinished: no clock yet.
    d = run([w], mine=[(w, 0), (w, 1)], containers=containers[:1], memory=done(w, 0))
    assert d.update.jobs_done == {} and not d.inputs.expired
    memory = done(w, 0, 1)
    d = run([w], mine=[(w, 0), (w, 1)], containers=containers, memory=memory)
    assert d.update.jobs_done == {w.key: (w.spec_hash, NOW)} and not d.inputs.expired
    memory.jobs_done = {w.key: (w.spec_hash, NOW - 61)}
    d = run([w], mine=[(w, 0), (w, 1)], containers=containers, memory=memory)
    assert d.inputs.expired == {rid(w, 0), rid(w, 1)}
    actions = plan(d.desired, containers, d.inputs).actions
    assert sorted((a.op, a.replica.replica) for a in actions) == [("remove", 0), ("remove", 1)]
    # A clock started for another spec starts again.
    memory.jobs_done = {w.key: ("old", NOW - 61)}
    assert not run([w], mine=[(w, 0), (w, 1)], containers=containers, memory=memory).inputs.expired


def test_finished_indices_without_a_ttl_keep_their_containers() -> None:
    w = indexed(1)
    c = observed(w, 0, "exited", exit_code=0)
    d = run([w], mine=[(w, 0)], containers=[c], memory=done(w, 0))
    assert d.update.jobs_done == {}
    assert plan(d.desired, [c], d.inputs).actions == []


def test_plan_removes_expired_containers_but_stops_ended_ones() -> None:
    w = indexed(2)
    c0, c1 = observed(w, 0, "exited", exit_code=0), observed(w, 1)
    inputs = PlanInputs(
        finished={rid(w, 0): State.SUCCEEDED, rid(w, 1): State.FAILED},
        expired=frozenset({rid(w, 0)}),
        stop={rid(w, 1): "Job failed"},
    )
    actions = plan([Instance(w, 0, "r"), Instance(w, 1, "r")], [c0, c1], inputs).actions
    assert [(a.op, a.target.id if a.target else None) for a in actions] == [("remove", c0.id), ("stop", c1.id)]


def test_cronjob_runs_are_gated_like_jobs() -> None:
    cron = workload("tick", 2, kind="CronJob", job=JobSpec(completions=2, parallelism=1))
    run_w = cron.model_copy(update={"name": "tick-1700000000"})
    d = run([cron], cron_runs=[run_w])
    assert list(d.inputs.wait) == [rid(run_w, 1)], "parallelism 1: the second index waits"
    assert not any(r.key == cron.key for r in d.inputs.wait), "the CronJob itself runs nothing"
    suspended = run_w.model_copy(update={"job": JobSpec(completions=2, suspend=True)})
    d = run([cron], cron_runs=[suspended])
    assert set(d.inputs.suspended) == {rid(suspended, 0), rid(suspended, 1)}


def test_a_failed_index_stops_its_pods_other_containers() -> None:
    main, side = ContainerSpec(name="main", image="img"), ContainerSpec(name="side", image="img")
    rules = (FailureRule(action="FailJob", operator="In", values=(42,), container="main"),)
    w = workload("pair", kind="Job", pod=PodSpec(containers=(main, side), restart_policy="Never"))
    w = w.model_copy(update={"job": JobSpec(failure_rules=rules)})
    cs = [observed(w, 0, "exited", exit_code=42), observed(w, 0, container="side")]
    d = run([w], mine=[(w, 0)], containers=cs)
    actions = plan(d.desired, cs, d.inputs).actions
    assert [(a.op, a.target.id if a.target else None) for a in actions] == [("stop", cs[1].id)]
