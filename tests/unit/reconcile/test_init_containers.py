"""Init containers, native sidecars and lifecycle hooks: conversion, plan, policy and executor, engine-free."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gitops.identity import ReplicaId
from gitops.manifests.load import parse_file
from gitops.model import ContainerSpec, Handler, Hooks, PodSpec, PortSpec, Workload
from gitops.reconcile import hooks
from gitops.reconcile.execute import Executor
from gitops.reconcile.memory import Memory, RestartTrack
from gitops.reconcile.observe import observe
from gitops.reconcile.plan import Action, Instance, PlanInputs, plan
from gitops.reconcile.policy import job_results
from gitops.runtime.base import Runtime
from gitops.states import Reason, State
from tests.builders import deployment, observed, workload
from tests.fakes import FakeRuntime
from tests.helpers import wait_for

NODE = "n1"


def pod(restart: str = "Always", app_hooks: Hooks | None = None) -> PodSpec:
    """init ``setup``, sidecar ``proxy`` (port 9000), init ``migrate``, app ``main`` (port 80)."""
    return PodSpec(
        init_containers=(
            ContainerSpec(name="setup", image="img"),
            ContainerSpec(name="proxy", image="img", restart_policy="Always", ports=(PortSpec(container_port=9000),)),
            ContainerSpec(name="migrate", image="img"),
        ),
        containers=(ContainerSpec(name="main", image="img", ports=(PortSpec(container_port=80),), hooks=app_hooks),),
        restart_policy=restart,  # type: ignore[arg-type]
    )


def app(kind: str = "Deployment", restart: str = "Always", app_hooks: Hooks | None = None) -> Workload:
    return workload(kind=kind, pod=pod(restart, app_hooks))  # type: ignore[arg-type]


# --- conversion ----------------------------------------------------------------------------------------------------


def test_init_containers_sidecars_and_hooks_are_read() -> None:
    text = deployment(
        pod="""
        initContainers:
        - {name: setup, image: busybox, command: [sh, -c, "echo hi > /data/x"], resources: {requests: {cpu: 500m}}}
        - name: proxy
          image: envoy
          restartPolicy: Always
          resources: {requests: {cpu: 100m}}
          lifecycle: {preStop: {sleep: {seconds: 5}}}
        """,
        container="""
        resources: {requests: {cpu: 200m}}
        lifecycle:
          postStart: {exec: {command: [touch, /ready]}}
          preStop: {httpGet: {path: /quit, port: 8080}}
        """,
    )
    result = parse_file("app.yaml", text.encode())
    assert result.errors == ()
    p = result.workloads[0].pod
    assert [c.name for c in p.init_containers] == ["setup", "proxy"]
    assert [c.name for c in p.sidecars()] == ["proxy"] and [c.name for c in p.long_running()] == ["proxy", "main"]
    assert p.init_containers[1].hooks == Hooks(pre_stop=Handler(handler="sleep", timeout_s=5))
    main = p.containers[0]
    assert main.hooks is not None and main.hooks.post_start == Handler(handler="exec", command=("touch", "/ready"))
    assert main.hooks.pre_stop is not None and (main.hooks.pre_stop.path, main.hooks.pre_stop.port) == ("/quit", 8080)
    # Kubernetes' effective request: max(init 500m alone, sidecar 100m + app 200m).
    assert p.cpu_request_millis() == 500


def test_init_container_names_are_unique_across_the_pod() -> None:
    text = deployment(pod="initContainers: [{name: main, image: busybox}]")
    result = parse_file("app.yaml", text.encode())
    assert [(e.field, e.message) for e in result.errors] == [
        ("spec.template.spec.containers[0].name", "container name 'main' is already used by initContainers[0]")
    ]


def test_a_pod_without_init_containers_keeps_its_hash() -> None:
    w = workload()
    assert w.model_copy(update={"pod": w.pod.model_copy(update={"init_containers": ()})}).spec_hash == w.spec_hash


# --- plan ----------------------------------------------------------------------------------------------------


def test_a_new_pod_runs_sidecars_before_the_app() -> None:
    w = app()
    p = plan([Instance(w, 0, "r1")], [], PlanInputs())
    assert [(a.op, a.container.name if a.container else "") for a in p.actions] == [("run", "proxy"), ("run", "main")]


def test_a_failed_init_container_backs_off_then_the_pod_is_rebuilt() -> None:
    w = app()
    rid = ReplicaId(w.key, 0)
    failed = observed(w, 0, "exited", exit_code=1, container="setup", role="init")
    gated = PlanInputs(init_failed=frozenset({rid}), restart_not_before={rid: 130.0}, now=100.0)
    p = plan([Instance(w, 0, "r1")], [failed], gated)
    assert p.actions == [] and p.waiting[rid] == (Reason.CRASH_LOOP, "init containers run again in 30s")
    p = plan([Instance(w, 0, "r1")], [failed], PlanInputs(init_failed=frozenset({rid}), now=131.0))
    assert [(a.op, a.target or (a.container and a.container.name)) for a in p.actions] == [
        ("remove", failed),
        ("run", "proxy"),
        ("run", "main"),
    ]


def test_an_init_container_left_beside_a_running_pod_is_removed_not_restarted() -> None:
    w = app()
    left = observed(w, 0, "exited", exit_code=0, container="migrate", role="init")
    pod_now = [observed(w, 0, container="proxy", role="sidecar"), observed(w, 0, container="main"), left]
    p = plan([Instance(w, 0, "r1")], pod_now, PlanInputs())
    assert [(a.op, a.target) for a in p.actions] == [("remove", left)]


@pytest.mark.parametrize("restart", ["OnFailure", "Never"])
def test_a_sidecar_is_restarted_whatever_the_pod_policy(restart: str) -> None:
    w = app("Job", restart)
    side = observed(w, 0, "exited", exit_code=0, container="proxy", role="sidecar")
    p = plan([Instance(w, 0, "r1")], [side, observed(w, 0, container="main")], PlanInputs())
    assert [(a.op, a.target) for a in p.actions] == [("start", side)]


def test_a_finished_job_stops_its_sidecars() -> None:
    w = app("Job", "Never")
    rid = ReplicaId(w.key, 0)
    side = observed(w, 0, container="proxy", role="sidecar")
    main = observed(w, 0, "exited", exit_code=0, container="main")
    obs = observe([side, main], [w], {}, None, 0.0)
    results = job_results([Instance(w, 0, "r1")], obs, Memory(), {})
    assert results[rid].state == State.SUCCEEDED
    p = plan([Instance(w, 0, "r1")], [side, main], PlanInputs(finished={rid: State.SUCCEEDED}))
    assert [(a.op, a.target, a.cause) for a in p.actions] == [("stop", side, "the Job's main containers finished")]


def test_sidecars_are_removed_after_the_app() -> None:
    w = app()
    side, main = observed(w, 0, container="proxy", role="sidecar"), observed(w, 0, container="main")
    p = plan([], [side, main], PlanInputs())
    assert [a.target for a in p.actions] == [main, side]


# --- executor ----------------------------------------------------------------------------------------------------


def executor(engine: FakeRuntime) -> Executor:
    runtime: Runtime = engine
    return Executor(runtime, NODE, Path("/nonexistent"), Path("/nonexistent"), Path("/nonexistent"))


def runs(inst: Instance) -> list[Action]:
    return [Action("run", inst.id, "missing", instance=inst, container=c) for c in inst.workload.pod.long_running()]


def test_init_containers_run_in_order_to_completion_and_are_removed() -> None:
    engine = FakeRuntime(images={"img"})
    inst = Instance(app(), 0, "r1")
    out = executor(engine).execute(runs(inst))
    assert out.failures == {} and out.ran == {inst.id}
    by_name = {r.labels["gitops.container"]: r for r in engine.requests}
    assert [r.labels["gitops.container"] for r in engine.requests] == ["setup", "proxy", "migrate", "main"]
    # The sidecar holds the pod's network and publishes every port; init containers have their own.
    proxy = by_name["proxy"]
    assert proxy.network_mode is None and set(proxy.ports) == {"9000/tcp", "80/tcp"}
    assert by_name["main"].network_mode == "container:" + proxy.name
    assert by_name["setup"].network_mode is None and by_name["setup"].ports == {}
    assert (by_name["setup"].labels["gitops.role"], proxy.labels["gitops.role"]) == ("init", "sidecar")
    left = sorted(c.labels["gitops.container"] for c in engine.containers.values())
    assert left == ["main", "proxy"]


@pytest.mark.parametrize(("restart", "reason"), [("Always", "Init:CrashLoopBackOff"), ("Never", "Init:Error")])
def test_a_failing_init_container_stops_the_pod_before_its_app(restart: str, reason: str) -> None:
    engine = FakeRuntime(images={"img"}, exit_codes={".setup_": 3})
    kind = "Job" if restart == "Never" else "Deployment"
    inst = Instance(app(kind, restart), 0, "r1")
    out = executor(engine).execute(runs(inst))
    assert out.failures[inst.id] == (reason, "init container setup exited with code 3")
    # Kept, exited, for `docker logs`; nothing after it was created.
    assert [(c.labels["gitops.container"], c.state, c.exit_code) for c in engine.containers.values()] == [
        ("setup", "exited", 3)
    ]


def test_pre_stop_runs_inside_the_grace_period_before_the_stop() -> None:
    engine = FakeRuntime(images={"img"}, stop_timeout=5)
    drain = Hooks(pre_stop=Handler(handler="exec", command=("drain",)))
    w = app(app_hooks=drain)
    c = engine.add_container(observed(w, 0, container="main", hooks=hooks.encode(drain)))
    ex = executor(engine)
    ex.execute([Action("remove", c.rid, "gone", target=c)])
    ex.close()
    assert engine.ops("exec", "remove") == ["exec", "remove"]
    assert engine.graces[c.id] == 5  # the exec took no whole second


def test_a_sleeping_pre_stop_leaves_the_stop_what_remains_of_the_grace_period() -> None:
    engine = FakeRuntime(images={"img"}, stop_timeout=4)
    nap = Hooks(pre_stop=Handler(handler="sleep", timeout_s=1))
    c = engine.add_container(observed(app(app_hooks=nap), 0, container="main", hooks=hooks.encode(nap)))
    began = time.monotonic()
    engine.stop(c.id, hooks.pre_stop(engine, c))
    assert time.monotonic() - began >= 1.0 and engine.graces[c.id] == 3
    # Never less than the kubelet's minimum, however long the hook took.
    long_nap = Hooks(pre_stop=Handler(handler="sleep", timeout_s=9))
    engine.stop_timeout = 1
    c = engine.add_container(observed(app(app_hooks=long_nap), 1, container="main", hooks=hooks.encode(long_nap)))
    assert hooks.pre_stop(engine, c) == hooks.MIN_STOP_GRACE_S


def test_a_failing_post_start_kills_the_container() -> None:
    engine = FakeRuntime(images={"img"})
    engine.exec = lambda cid, cmd: (1, "")  # type: ignore[method-assign]
    w = app(app_hooks=Hooks(post_start=Handler(handler="exec", command=("false",))))
    inst = Instance(w, 0, "r1")
    out = executor(engine).execute(runs(inst))
    reason, message = out.failures[inst.id]
    assert reason == "FailedPostStartHook" and "exit code 1" in message
    main = next(c for c in engine.containers.values() if c.labels["gitops.container"] == "main")
    assert main.state == "exited" and engine.subjects("stop") == [main.id]


def test_an_init_container_waiting_for_a_superseded_spec_is_cut_short() -> None:
    engine = FakeRuntime(images={"img"}, exit_codes={".setup_": None})
    ex = executor(engine)
    inst = Instance(app(), 0, "r1")
    ex.submit(runs(inst))
    wait_for(lambda: inst.id in ex.busy() and ex.busy()[inst.id].startswith("Init:0/2"), what="init running")
    ex.supersede({inst.id: inst.spec_hash})
    time.sleep(0.1)
    assert inst.id in ex.busy()  # still wanted: it waits on
    ex.supersede({})
    wait_for(ex.idle, what="the init container cut short")
    assert engine.containers == {} and ex.collect().failures == {}


def test_a_job_whose_init_container_keeps_failing_fails_at_its_backoff_limit() -> None:
    w = app("Job", "Never")
    rid = ReplicaId(w.key, 0)
    memory = Memory(failures={rid: ("Init:Error", "init container setup exited with code 3")})
    for restarts, failed in ((5, False), (6, True)):
        memory.restarts = {rid: RestartTrack(total=restarts)}
        results = job_results([Instance(w, 0, "r1")], observe([], [w], {}, None, 0.0), memory, {})
        assert (rid in results) is failed
    assert (results[rid].state, results[rid].reason) == (State.FAILED, Reason.BACKOFF_LIMIT)
