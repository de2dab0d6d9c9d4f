"""Init containers, native sidecars and lifecycle hooks on the real engine."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import docker
import pytest

from gitops.reconcile.reconciler import Reconciler
from gitops.runtime.base import RunRequest
from gitops.runtime.docker import DockerRuntime
from tests.builders import TEST_IMAGE, deployment, job
from tests.helpers import DOCKER_HOST, Repo, make_reconciler, managed, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"


def reconciler(repo: Repo, node: str, tmp_path: Path) -> Reconciler:
    return make_reconciler(str(repo.path), node, tmp_path / f"state-{node}", interval=1)


def by_container(node: str) -> dict[str, dict[str, object]]:
    return {str(r["Labels"]["gitops.container"]): r for r in managed(node)}


def test_init_writes_what_the_app_serves_sidecar_first_and_last(repo: Repo, node_name: str, tmp_path: Path) -> None:
    manifest = deployment(
        "web",
        engine=True,
        grace_s=10,
        command=["sh", "-c", f"cat /data/msg; {LOOP}"],
        pod=f"""
        volumes: [{{name: data, emptyDir: {{}}}}]
        initContainers:
        - name: setup
          image: {TEST_IMAGE}
          imagePullPolicy: IfNotPresent
          command: [sh, -c, "echo written-by-init > /data/msg"]
          volumeMounts: [{{name: data, mountPath: /data}}]
        - name: proxy
          image: {TEST_IMAGE}
          imagePullPolicy: IfNotPresent
          restartPolicy: Always
          command: [sh, -c, "{LOOP}"]
        """,
        container="""
        volumeMounts: [{name: data, mountPath: /data}]
        lifecycle:
          postStart: {exec: {command: [touch, /data/post-started]}}
          preStop: {sleep: {seconds: 2}}
        """,
    )
    repo.put("apps/web.yaml", manifest)
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    rows = wait_for(lambda: (r := by_container(node_name)) and len(r) == 2 and r, what="sidecar and app")
    assert set(rows) == {"proxy", "main"}  # the init container is gone once done
    api = docker.DockerClient(base_url=DOCKER_HOST).api
    app, proxy = api.inspect_container(rows["main"]["Id"]), api.inspect_container(rows["proxy"]["Id"])
    assert proxy["State"]["StartedAt"] < app["State"]["StartedAt"]
    assert app["HostConfig"]["NetworkMode"] == f"container:{proxy['Id']}"
    wait_for(lambda: b"written-by-init" in api.logs(app["Id"]), what="the app printing the init container's file")
    assert (
        api.exec_start(api.exec_create(app["Id"], ["ls", "/data/post-started"])["Id"]).strip() == b"/data/post-started"
    )
    rec.run_pass()
    assert [w["state"] for w in repo.status(node_name)["workloads"]] == ["ready"]

    # Removal: the app's preStop sleeps 2 s of its 10 s grace, then the sidecar stops after it.
    gone: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and len(gone) < 2:
            present = set(by_container(node_name))
            for name in ("main", "proxy"):
                if name not in present:
                    gone.setdefault(name, time.monotonic())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    began = time.monotonic()
    repo.remove("apps/web.yaml")
    try:
        rec.run_pass()
        wait_for(rec.executor.idle, timeout=15, what="removal")
        wait_for(lambda: len(gone) == 2, timeout=5, what="both containers gone")
    finally:
        done.set()
        watcher.join()
        with contextlib.suppress(Exception):
            rec.close()
    assert 2.0 <= gone["main"] - began < 8.0
    assert gone["proxy"] >= gone["main"]


def test_failing_init_container_backs_off_and_the_app_never_runs(repo: Repo, node_name: str, tmp_path: Path) -> None:
    manifest = deployment(
        "web",
        engine=True,
        pod=f"""
        initContainers:
        - {{name: setup, image: {TEST_IMAGE}, imagePullPolicy: IfNotPresent, command: [sh, -c, "exit 3"]}}
        """,
    )
    repo.put("apps/web.yaml", manifest)
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    rec.run_pass()
    [row] = repo.status(node_name)["workloads"]
    assert (row["state"], row["reason"], row["message"]) == (
        "failed",
        "Init:CrashLoopBackOff",
        "init container setup exited with code 3",
    )
    # The failed init container is kept for `docker logs`; the app container was never created.
    assert [(r["Labels"]["gitops.container"], r["State"]) for r in managed(node_name)] == [("setup", "exited")]
    [(reason, message)] = rec.run_pass().plan.waiting.values()
    assert reason == "CrashLoopBackOff" and message.startswith("init containers run again in")


def test_downward_api_values_are_visible_inside_the_container(repo: Repo, node_name: str, tmp_path: Path) -> None:
    manifest = deployment(
        "web",
        engine=True,
        container="""
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
        - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        resources: {limits: {memory: 32Mi}}
        """,
    )
    repo.put("apps/web.yaml", manifest)
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state", interval=1, host_ip="192.0.2.7")
    rec.run_pass()
    [row] = wait_for(lambda: managed(node_name, state="running"), what="the app running")
    api = docker.DockerClient(base_url=DOCKER_HOST).api
    env = api.exec_start(api.exec_create(row["Id"], ["env"])["Id"]).decode().split("\n")
    seen = dict(line.split("=", 1) for line in env if "=" in line)
    ip = api.inspect_container(row["Id"])["NetworkSettings"]["Networks"]["gitops-pods"]["IPAddress"]
    assert (seen["POD_NAME"], seen["NODE_NAME"], seen["HOST_IP"], seen["MEM_MI"]) == (
        "web-0",
        node_name,
        "192.0.2.7",
        "32",
    )
    assert seen["POD_IP"] == ip and ip


def test_a_job_completes_when_its_main_container_does_and_its_sidecar_stops(
    repo: Repo, node_name: str, tmp_path: Path
) -> None:
    manifest = job(
        "once",
        engine=True,
        command=["sh", "-c", "echo done"],
        pod=f"""
        restartPolicy: Never
        initContainers:
        - {{name: proxy, image: {TEST_IMAGE}, imagePullPolicy: IfNotPresent, restartPolicy: Always,
            command: [sh, -c, "{LOOP}"]}}
        """,
    )
    repo.put("jobs/once.yaml", manifest)
    rec = reconciler(repo, node_name, tmp_path)

    def succeeded() -> bool:
        rec.run_pass()
        return [w["state"] for w in repo.status(node_name)["workloads"]] == ["succeeded"]

    wait_for(succeeded, timeout=15, interval=0.3, what="the Job to succeed")
    rec.run_pass()
    wait_for(rec.executor.idle, what="the sidecar stop")
    states = {str(r["Labels"]["gitops.container"]): (r["State"], r["Status"]) for r in managed(node_name)}
    assert states["main"][0] == "exited" and states["proxy"][0] == "exited", states


def test_engine_wait_times_out_while_the_container_runs_then_gives_its_exit_code(node_name: str) -> None:
    runtime = DockerRuntime(DOCKER_HOST)
    labels = {"gitops.managed": "true", "gitops.node": node_name}
    cid = runtime.run(RunRequest(f"wait-{node_name}", TEST_IMAGE, labels, command=["sh", "-c", "sleep 1.5; exit 4"]))
    try:
        assert runtime.wait(cid, 0.5) is None
        assert runtime.wait(cid, 5.0) == 4
    finally:
        runtime.close()
