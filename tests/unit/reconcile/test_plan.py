"""The pure planner: every action has a cause, and the gates hold."""

from __future__ import annotations

from gitops.model import ContainerSpec, Mount, PodSpec
from gitops.reconcile.plan import Instance, PlanInputs, plan
from tests.builders import observed, workload


def test_nothing_to_do_when_everything_matches() -> None:
    w = workload()
    p = plan([Instance(w, 0, "r1"), Instance(w, 1, "r1")], [observed(w, 0), observed(w, 1)], PlanInputs())
    assert p.actions == []


def test_missing_replica_is_run_with_cause() -> None:
    w = workload()
    p = plan([Instance(w, 0, "abcdef12")], [], PlanInputs())
    assert [(a.op, a.replica) for a in p.actions] == [("run", (w.key, 0))]
    assert "missing" in p.actions[0].cause


def test_spec_change_keeps_old_until_new_is_ready() -> None:
    old, new = workload(version="a"), workload(version="b")
    p = plan([Instance(new, 0, "r2")], [observed(old, 0)], PlanInputs())
    assert [a.op for a in p.actions] == ["run"]
    assert "spec changed" in p.actions[0].cause
    both = [observed(old, 0), observed(new, 0)]
    p = plan([Instance(new, 0, "r2")], both, PlanInputs())
    assert p.actions == [] and p.waiting[(new.key, 0)][0] == "RollingUpdate"
    p = plan([Instance(new, 0, "r2")], both, PlanInputs(ready_ids=frozenset({both[1].id})))
    assert [(a.op, a.target) for a in p.actions] == [("remove", both[0])]


def test_rollout_gate_and_deadline_abort() -> None:
    old, new = workload(version="a"), workload(version="b")
    rid = (new.key, 0)
    p = plan([Instance(new, 0, "r2")], [observed(old, 0)], PlanInputs(wait={rid: "no slot"}))
    assert p.actions == [] and p.waiting[rid] == ("Waiting", "no slot")
    both = [observed(old, 0), observed(new, 0)]
    p = plan([Instance(new, 0, "r2")], both, PlanInputs(abort={rid: "not ready within 600s"}))
    assert [(a.op, a.target) for a in p.actions] == [("remove", both[1])]
    assert p.waiting[rid][0] == "RolloutFailed"


def test_exclusive_or_host_port_pods_break_before_make() -> None:
    old, new = workload(host_port=8080, version="a"), workload(host_port=8080, version="b")
    assert [a.op for a in plan([Instance(new, 0, "r")], [observed(old, 0)], PlanInputs()).actions] == [
        "remove",
        "run",
    ]
    vol = ContainerSpec(name="main", image="img", mounts=(Mount(target="/d", type="hostPath", source="/srv"),))
    w = workload(pod=PodSpec(containers=(vol,)))
    assert w.exclusive


def test_prune_only_when_revision_is_valid() -> None:
    gone = workload("gone")
    assert [a.op for a in plan([], [observed(gone, 0)], PlanInputs()).actions] == ["remove"]
    p = plan([], [observed(gone, 0)], PlanInputs(prune_allowed=False))
    assert p.actions == [] and p.waiting[(gone.key, 0)][0] == "NotPruned"
    p = plan([], [observed(gone, 0)], PlanInputs(protected_keys=frozenset({gone.key})))
    assert p.actions == []


def test_scale_down_removes_extra_replicas_even_with_errors_elsewhere() -> None:
    w = workload()
    p = plan([Instance(w, 0, "r")], [observed(w, 0), observed(w, 1)], PlanInputs(prune_allowed=False))
    assert [(a.op, a.replica[1]) for a in p.actions] == [("remove", 1)]


def test_stopped_container_restarts_in_place_respecting_backoff() -> None:
    w = workload()
    dead = observed(w, 0, state="exited", exit_code=1)
    p = plan([Instance(w, 0, "r")], [dead], PlanInputs())
    assert [(a.op, a.target) for a in p.actions] == [("start", dead)]
    p = plan([Instance(w, 0, "r")], [dead], PlanInputs(restart_not_before={(w.key, 0): 50.0}, now=40.0))
    assert p.actions == [] and p.waiting[(w.key, 0)][0] == "CrashLoopBackOff"


def test_finished_job_is_not_rerun() -> None:
    job = workload("j", kind="Job")
    assert plan([Instance(job, 0, "r")], [], PlanInputs(finished={(job.key, 0): "succeeded"})).actions == []
    done = observed(job, 0, state="exited", exit_code=0)
    assert plan([Instance(job, 0, "r")], [done], PlanInputs()).actions == []


def test_handoff_hold_and_exclusive_block() -> None:
    w = workload()
    p = plan([], [observed(w, 3)], PlanInputs(hold=frozenset({(w.key, 3)})))
    assert p.actions == [] and p.waiting[(w.key, 3)][0] == "Handoff"
    p = plan([Instance(w, 0, "r")], [], PlanInputs(blocked={(w.key, 0): "node-b still runs it"}))
    assert p.actions == [] and p.waiting[(w.key, 0)] == ("Waiting", "node-b still runs it")


def test_partial_pod_is_rebuilt_whole() -> None:
    a, b = ContainerSpec(name="app", image="i"), ContainerSpec(name="side", image="j")
    w = workload(pod=PodSpec(containers=(a, b)))
    p = plan([Instance(w, 0, "r")], [observed(w, 0, container="side")], PlanInputs())
    assert [a.op for a in p.actions] == ["remove", "run", "run"]


def test_job_past_its_deadline_is_stopped_not_removed() -> None:
    job = workload("j", kind="Job")
    rid = (job.key, 0)
    live = observed(job, 0)
    p = plan([Instance(job, 0, "r")], [live], PlanInputs(finished={rid: "failed"}, stop={rid: "too long"}))
    assert [(a.op, a.target) for a in p.actions] == [("stop", live)]


def test_ready_containers_behind_a_service_drain_before_they_are_removed() -> None:
    old, new = workload(version="a"), workload(version="b")
    gone, other = observed(old, 1), observed(workload("other"), 0)
    both = [observed(old, 0), observed(new, 0)]
    ready = frozenset({both[0].id, both[1].id, gone.id, other.id})
    served = PlanInputs(ready_ids=ready, behind_service=frozenset({old.key}), drain_s=3.0, now=100.0)
    containers = [*both, gone, other]
    p = plan([Instance(new, 0, "r2")], containers, served)
    # Not behind a Service: removed at once. The scaled-down replica says Terminating while it drains;
    # the replaced container left its replica's row when the new one appeared, so its row stays as it is.
    assert [(a.op, a.target) for a in p.actions] == [("remove", other)]
    assert p.waiting == {gone.rid: ("Terminating", "draining from Service endpoints for 3s")}
    assert p.draining == {both[0].id: 100.0, gone.id: 100.0}
    later = PlanInputs(**{**served.__dict__, "draining": p.draining, "now": 102.0})
    assert plan([Instance(new, 0, "r2")], containers, later).draining == p.draining
    done = PlanInputs(**{**served.__dict__, "draining": p.draining, "now": 103.0})
    p = plan([Instance(new, 0, "r2")], containers, done)
    assert [(a.op, a.target) for a in p.actions] == [("remove", both[0]), ("remove", other), ("remove", gone)]
    assert p.draining == {} and p.waiting == {}
    # Not ready: no endpoint anywhere, nothing to drain.
    p = plan([], [gone], PlanInputs(behind_service=frozenset({old.key}), drain_s=3.0, now=100.0))
    assert [(a.op, a.target) for a in p.actions] == [("remove", gone)]


def test_a_break_before_make_replacement_behind_a_service_waits_for_the_drain() -> None:
    old, new = workload(host_port=8080, version="a"), workload(host_port=8080, version="b")
    c = observed(old, 0)
    inputs = PlanInputs(ready_ids=frozenset({c.id}), behind_service=frozenset({old.key}), drain_s=3.0, now=10.0)
    p = plan([Instance(new, 0, "r")], [c], inputs)
    assert p.actions == [] and p.waiting[c.rid][0] == "Terminating"
    p = plan([Instance(new, 0, "r")], [c], PlanInputs(**{**inputs.__dict__, "draining": p.draining, "now": 13.0}))
    assert [a.op for a in p.actions] == ["remove", "run"]
