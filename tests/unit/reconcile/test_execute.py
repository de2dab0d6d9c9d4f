"""The executor against an in-memory engine: requests, ordering, image pulls, removals."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gitops.identity import ContainerIdentity, Observed, ReplicaId, pod_label_filters
from gitops.model import (
    ContainerSpec,
    EnvVar,
    JobSpec,
    Mount,
    PodSpec,
    PortSpec,
    PullPolicy,
    SecretRef,
    SecurityContext,
    Workload,
)
from gitops.reconcile import execute as execute_module
from gitops.reconcile.execute import PULL_RETRY_MIN_S, Executor
from gitops.reconcile.plan import Action, Instance
from gitops.runtime.base import Runtime, RuntimeFailure, RuntimeUnavailable
from gitops.secrets import redact
from tests.builders import observed, workload
from tests.fakes import FakeRuntime

NODE = "n1"


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    (d / "default" / "db").mkdir(parents=True)
    (d / "default" / "db" / "password").write_text("hunter2-secret\n")
    return d


@pytest.fixture
def engine() -> FakeRuntime:
    return FakeRuntime(images={"img"})


def executor(engine: FakeRuntime, secrets_dir: Path, workers: int = 4) -> Executor:
    runtime: Runtime = engine  # the fake satisfies the Protocol structurally
    return Executor(
        runtime, NODE, secrets_dir, secrets_dir.parent / "files", secrets_dir.parent / "seccomp", workers=workers
    )


def runs(inst: Instance) -> list[Action]:
    """The planner's actions creating every container of ``inst``'s pod, in pod order."""
    return [Action("run", inst.id, "missing", instance=inst, container=c) for c in inst.workload.pod.containers]


def with_sidecar(host_network: bool = False) -> Workload:
    main = ContainerSpec(
        name="main",
        image="img",
        env=(
            EnvVar(name="MODE", value="prod"),
            EnvVar(name="PASSWORD", secret=SecretRef(name="db", key="password")),
            EnvVar(name="OPTIONAL", secret=SecretRef(name="db", key="absent", optional=True)),
        ),
        ports=(PortSpec(container_port=80, host_port=8080),),
    )
    side = ContainerSpec(name="side", image="img", ports=(PortSpec(container_port=9090, protocol="udp"),))
    return workload(pod=PodSpec(containers=(main, side), host_network=host_network))


def image_pod(policy: PullPolicy, image: str = "app:1") -> Workload:
    return workload(pod=PodSpec(containers=(ContainerSpec(name="main", image=image, pull_policy=policy),)))


# --- the run request ---


def test_run_request_carries_identity_labels_and_name(engine: FakeRuntime, secrets: Path) -> None:
    w = with_sidecar()
    inst = Instance(w, 2, "rev0123456789", gpu_ids=("GPU-1",))
    out = executor(engine, secrets).execute(runs(inst))
    assert out.failures == {}
    assert out.ran == {inst.id}
    main, side = engine.requests
    h8 = w.spec_hash[:8]
    assert main.name == f"default.web.2.{h8}_n1"
    assert side.name == f"default.web.2.{h8}.side_n1"
    for req, container in ((main, "main"), (side, "side")):
        ident = ContainerIdentity(NODE, inst.id, w.spec_hash, "rev0123456789", container, ("GPU-1",), False)
        assert req.labels == ident.labels()
        decoded = Observed("x", req.name, req.labels, "running", None, 0)
        assert (decoded.rid, decoded.spec_hash, decoded.container) == (ReplicaId(w.key, 2), w.spec_hash, container)
        assert decoded.gpu_ids == ("GPU-1",)
        assert req.gpu_ids == ("GPU-1",)
    assert main.labels["gitops.emptydir"] == "false"
    assert main.labels["gitops.revision"] == "rev0123456789"


def test_env_reads_secrets_from_the_secrets_dir(engine: FakeRuntime, secrets: Path) -> None:
    inst = Instance(with_sidecar(), 0, "r")
    executor(engine, secrets).execute(runs(inst))
    # The trailing newline of the secret file is dropped; a missing optional secret is empty.
    assert engine.requests[0].env == ["MODE=prod", "PASSWORD=hunter2-secret", "OPTIONAL="]


def test_missing_secret_fails_the_replica_naming_the_path_not_a_value(engine: FakeRuntime, secrets: Path) -> None:
    env = (
        EnvVar(name="PASSWORD", secret=SecretRef(name="db", key="password")),
        EnvVar(name="TOKEN", secret=SecretRef(name="api", key="token")),
    )
    w = workload(pod=PodSpec(containers=(ContainerSpec(name="main", image="img", env=env),)))
    inst = Instance(w, 0, "r")
    out = executor(engine, secrets).execute(runs(inst))
    reason, message = out.failures[inst.id]
    assert reason == "SecretMissing"
    assert str(secrets / "default" / "api" / "token") in message
    assert "TOKEN" in message
    assert "hunter2" not in message
    assert engine.ops("run") == []
    assert out.ran == set()


def test_sidecars_join_the_first_containers_network_and_only_it_publishes(engine: FakeRuntime, secrets: Path) -> None:
    executor(engine, secrets).execute(runs(Instance(with_sidecar(), 0, "r")))
    main, side = engine.requests
    assert main.network_mode is None
    assert main.ports == {"80/tcp": 8080, "9090/udp": None}
    assert side.network_mode == f"container:{main.name}"
    assert side.ports == {}


def test_host_network_pods_publish_nothing_and_share_the_host(engine: FakeRuntime, secrets: Path) -> None:
    executor(engine, secrets).execute(runs(Instance(with_sidecar(host_network=True), 0, "r")))
    assert [(r.network_mode, r.ports) for r in engine.requests] == [("host", {}), ("host", {})]


def test_mounts_become_binds_and_emptydir_volumes(engine: FakeRuntime, secrets: Path) -> None:
    mounts = (
        Mount(target="/etc/app", type="hostPath", source="/srv/app/", read_only=True, sub_path="conf"),
        Mount(target="/scratch", type="emptyDir", source="cache"),
    )
    w = workload(pod=PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=mounts),)))
    inst = Instance(w, 0, "r")
    executor(engine, secrets).execute(runs(inst))
    (req,) = engine.requests
    ident = ContainerIdentity(NODE, inst.id, w.spec_hash, "r", "main", (), True)
    volume = ident.emptydir_volume("cache")
    assert req.binds == ["/srv/app/conf:/etc/app:ro", f"{volume}:/scratch:rw"]
    assert req.labels["gitops.emptydir"] == "true"
    assert engine.volumes[volume]["gitops.volume"] == "cache"
    # The volume exists before the container that mounts it.
    assert engine.ops("ensure_volume", "run") == ["ensure_volume", "run"]


# --- ordering and failures ---


def test_a_replicas_actions_run_in_order(engine: FakeRuntime, secrets: Path) -> None:
    w = with_sidecar()
    old = engine.add_container(observed(w, 0, spec_hash="0" * 64))
    inst = Instance(w, 0, "r")
    actions = [Action("remove", inst.id, "replaced", target=old), *runs(inst)]
    out = executor(engine, secrets).execute(actions)
    assert engine.ops("remove", "run") == ["remove", "run", "run"]
    assert engine.subjects("run") == [engine.requests[0].name, engine.requests[1].name]
    assert engine.requests[0].labels["gitops.container"] == "main"
    assert out.removed == out.ran == {inst.id}


def test_first_failure_skips_the_rest_of_that_replica_only(engine: FakeRuntime, secrets: Path) -> None:
    w = with_sidecar()
    broken, fine = Instance(w, 0, "r"), Instance(w, 1, "r")
    engine.fail("run", RuntimeFailure("port 8080 is already allocated", "PortInUse"), match="default.web.0.")
    out = executor(engine, secrets).execute([*runs(broken), *runs(fine)])
    assert out.failures == {broken.id: ("PortInUse", "port 8080 is already allocated")}
    assert out.ran == {fine.id}
    # Replica 0's sidecar is never tried; replica 1 runs both containers.
    names = engine.subjects("run")
    assert [n for n in names if ".web.0." in n] == [f"default.web.0.{w.spec_hash[:8]}_n1"]
    assert len([n for n in names if ".web.1." in n]) == 2


def test_start_stop_restart_map_to_engine_calls(engine: FakeRuntime, secrets: Path) -> None:
    w = workload(replicas=3)
    a, b, c = (engine.add_container(observed(w, i, "exited")) for i in range(3))
    actions = [
        Action("start", a.rid, "exited", target=a),
        Action("stop", b.rid, "deadline", target=b),
        Action("restart", c.rid, "liveness", target=c),
    ]
    out = executor(engine, secrets, workers=1).execute(actions)
    assert engine.calls[-3:] == [("start", a.id), ("stop", b.id), ("restart", c.id)]
    assert out.started == {a.rid, c.rid}


def test_engine_unavailable_ends_the_replicas_actions_without_a_verdict(engine: FakeRuntime, secrets: Path) -> None:
    w = workload()
    engine.fail("run", RuntimeUnavailable("engine gone"))
    ex = executor(engine, secrets)
    out = ex.execute(runs(Instance(w, 0, "r")))
    # Not a failure of the spec (no backoff): the next pass, with the engine back, tries again.
    assert (out.ran, out.failures, ex.busy()) == (set(), {}, {})


def test_replicas_run_side_by_side(engine: FakeRuntime, secrets: Path) -> None:
    w = workload(replicas=4)
    engine.delay("run", 0.2)
    actions = [a for i in range(4) for a in runs(Instance(w, i, "r"))]
    out = executor(engine, secrets, workers=4).execute(actions)
    assert len(out.ran) == 4
    # Counted by the engine, not timed: a loaded machine stretches any wall-clock bound.
    assert engine.max_in_flight >= 2


def test_one_worker_runs_replicas_one_at_a_time(engine: FakeRuntime, secrets: Path) -> None:
    w = workload(replicas=3)
    engine.delay("run", 0.02)
    executor(engine, secrets, workers=1).execute([a for i in range(3) for a in runs(Instance(w, i, "r"))])
    assert engine.max_in_flight == 1


# --- image pull policy ---


class Clock:
    """Stands in for the ``time`` module inside gitops.reconcile.execute."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(execute_module, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


@pytest.mark.parametrize(
    ("policy", "present", "pulls", "failure"),
    [
        ("IfNotPresent", True, 0, None),
        ("IfNotPresent", False, 1, None),
        ("Always", True, 1, None),
        ("Always", False, 1, None),
        ("Never", True, 0, None),
        ("Never", False, 0, "ErrImageNeverPull"),
    ],
)
def test_pull_policy(
    engine: FakeRuntime, secrets: Path, policy: PullPolicy, present: bool, pulls: int, failure: str | None
) -> None:
    if present:
        engine.images.add("app:1")
    inst = Instance(image_pod(policy), 0, "r")
    out = executor(engine, secrets).execute(runs(inst))
    assert engine.subjects("pull") == ["app:1"] * pulls
    if failure is None:
        assert out.failures == {}
        assert engine.ops("run") == ["run"]
    else:
        assert out.failures[inst.id][0] == failure
        assert "app:1" in out.failures[inst.id][1]
        assert engine.ops("run") == []


def test_an_image_is_pulled_once_per_execution(engine: FakeRuntime, secrets: Path) -> None:
    w = image_pod("Always").model_copy(update={"replicas": 3})
    out = executor(engine, secrets).execute([a for i in range(3) for a in runs(Instance(w, i, "r"))])
    assert len(out.ran) == 3
    assert engine.subjects("pull") == ["app:1"]


def test_failed_pull_backs_off_before_pulling_again(engine: FakeRuntime, secrets: Path, clock: Clock) -> None:
    inst = Instance(image_pod("IfNotPresent"), 0, "r")
    ex = executor(engine, secrets)
    engine.fail("pull", RuntimeFailure("registry says no", "ImagePullFailed"), times=None)

    first = ex.execute(runs(inst))
    assert first.failures[inst.id] == ("ImagePullFailed", "registry says no")
    assert engine.ops("pull") == ["pull"]

    clock.now += PULL_RETRY_MIN_S - 1
    second = ex.execute(runs(inst))
    assert second.failures[inst.id][0] == "ImagePullFailed"
    assert "registry says no" in second.failures[inst.id][1]
    assert "retry in" in second.failures[inst.id][1]
    assert engine.ops("pull") == ["pull"]  # not tried again within the backoff

    clock.now += 2  # past PULL_RETRY_MIN_S: tried again, fails again, and the backoff doubles
    ex.execute(runs(inst))
    assert engine.ops("pull") == ["pull", "pull"]
    clock.now += 2 * PULL_RETRY_MIN_S - 1
    ex.execute(runs(inst))
    assert engine.ops("pull") == ["pull", "pull"]

    clock.now += 2
    engine.heal("pull")  # the registry is back
    ok = ex.execute(runs(inst))
    assert ok.failures == {}
    assert engine.ops("pull", "run") == ["pull", "pull", "pull", "run"]


def test_failed_pull_of_a_present_image_uses_the_local_copy(engine: FakeRuntime, secrets: Path, clock: Clock) -> None:
    engine.images.add("app:1")
    inst = Instance(image_pod("Always"), 0, "r")
    ex = executor(engine, secrets)
    engine.fail("pull", RuntimeFailure("registry offline", "ImagePullFailed"), times=None)
    assert ex.execute(runs(inst)).failures == {}
    engine.containers.clear()
    clock.now += 1  # within the backoff: no pull, still runs from the local copy
    assert ex.execute(runs(inst)).failures == {}
    assert engine.ops("pull", "run") == ["pull", "run", "run"]


# --- removals ---


def test_background_removal_is_tracked_until_done(engine: FakeRuntime, secrets: Path) -> None:
    w = workload()
    old = engine.add_container(observed(w, 0, spec_hash="0" * 64))
    release = engine.hold("remove")
    ex = executor(engine, secrets)
    action = Action("remove", old.rid, "replaced", target=old)
    ex.execute([action])
    # execute() returned while the engine still works on the removal.
    assert ex.leaving() == {old.id}
    assert old.id in engine.containers
    # Asking again while it is under way does not start a second removal.
    ex.execute([action])
    release.set()
    deadline = time.monotonic() + 5
    while ex.leaving() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ex.leaving() == frozenset()
    assert old.id not in engine.containers
    assert engine.subjects("remove") == [old.id]
    ex.close()


def test_failed_background_removal_is_forgotten_too(engine: FakeRuntime, secrets: Path) -> None:
    w = workload()
    old = engine.add_container(observed(w, 0))
    engine.fail("remove", RuntimeFailure("device busy"))
    ex = executor(engine, secrets)
    out = ex.execute([Action("remove", old.rid, "replaced", target=old)])
    ex.close()  # waits for the reaper
    assert out.failures == {}
    assert ex.leaving() == frozenset()
    assert old.id in engine.containers  # retried by a later pass, as the planner still sees it


def test_removing_a_pod_without_emptydir_skips_the_volume_lookup(engine: FakeRuntime, secrets: Path) -> None:
    c = engine.add_container(observed(workload(), 0, emptydir=False))
    assert c.labels["gitops.emptydir"] == "false"
    ex = executor(engine, secrets)
    ex.execute([Action("remove", c.rid, "gone", target=c)])
    ex.close()
    assert engine.ops("remove", "remove_volumes") == ["remove"]


@pytest.mark.parametrize("labels", ["true", "unlabelled"])
def test_removing_a_pod_with_emptydir_removes_its_volumes(engine: FakeRuntime, secrets: Path, labels: str) -> None:
    c = observed(workload(), 0, emptydir=True)
    if labels == "unlabelled":  # written by a daemon that did not label emptyDir yet: look anyway
        c = Observed(c.id, c.name, {k: v for k, v in c.labels.items() if k != "gitops.emptydir"}, "running", None, 0)
    engine.add_container(c)
    mine = {**c.labels, "gitops.volume": "cache"}
    other = {**c.labels, "gitops.replica": "1"}
    engine.volumes.update({"mine": mine, "other-replica": other})
    ex = executor(engine, secrets)
    ex.execute([Action("remove", c.rid, "gone", target=c)])
    ex.close()
    assert engine.ops("remove", "remove_volumes") == ["remove", "remove_volumes"]
    assert engine.subjects("remove_volumes") == [",".join(pod_label_filters(c.labels))]
    assert set(engine.volumes) == {"other-replica"}


# --- namespaced secrets ---


def secret_pod(namespace: str, name: str, key: str) -> Instance:
    env = (EnvVar(name="TOKEN", secret=SecretRef(name=name, key=key)),)
    w = workload(namespace=namespace, pod=PodSpec(containers=(ContainerSpec(name="main", image="img", env=env),)))
    return Instance(w, 0, "r")


def test_a_workload_reads_only_its_own_namespaces_secrets(engine: FakeRuntime, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    for team, value in (("team-a", "team-a-token"), ("team-b", "team-b-token")):
        (secrets / team / "api").mkdir(parents=True)
        (secrets / team / "api" / "token").write_text(value)
    (secrets / "team-b" / "only-b").mkdir()
    (secrets / "team-b" / "only-b" / "token").write_text("team-b-private")

    own = secret_pod("team-a", "api", "token")
    out = executor(engine, secrets).execute(runs(own))
    assert out.failures == {}
    assert engine.requests[0].env == ["TOKEN=team-a-token"]

    # The same reference in team-a never resolves to team-b's directory.
    other = secret_pod("team-a", "only-b", "token")
    out = executor(engine, secrets).execute(runs(other))
    reason, message = out.failures[other.id]
    assert reason == "SecretMissing"
    assert str(secrets / "team-a" / "only-b" / "token") in message
    assert "team-b-private" not in message
    assert len(engine.requests) == 1


@pytest.mark.parametrize(
    ("name", "key"),
    [("..", "token"), ("api", ".."), ("../team-b/api", "token"), ("api", "../../team-b/api/token"), ("/etc", "passwd")],
)
def test_secret_references_that_would_escape_are_refused(
    engine: FakeRuntime, tmp_path: Path, name: str, key: str
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "team-b" / "api").mkdir(parents=True)
    (secrets / "team-b" / "api" / "token").write_text("team-b-token")
    (secrets / "team-a").mkdir()
    inst = secret_pod("team-a", name, key)
    out = executor(engine, secrets).execute(runs(inst))
    reason, message = out.failures[inst.id]
    assert reason == "SecretMissing"
    assert "refused" in message
    assert str(secrets / "team-a") in message
    assert "team-b-token" not in message
    assert engine.ops("run") == []


def test_redaction_covers_every_namespace(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    for team in ("team-a", "team-b"):
        (secrets / team / "db").mkdir(parents=True)
        (secrets / team / "db" / "password").write_text(f"{team}-password\n")
    assert redact("a=team-a-password b=team-b-password", secrets) == "a=*** b=***"


def test_indexed_jobs_see_their_completion_index_and_hostname(engine: FakeRuntime, secrets: Path) -> None:
    indexed = workload("shard", 3, kind="Job", job=JobSpec(completions=3, indexed=True))
    plain = workload("plain", 3, kind="Job")
    executor(engine, secrets).execute([*runs(Instance(indexed, 2, "r")), *runs(Instance(plain, 2, "r"))])
    by_name = {r.labels["gitops.name"]: r for r in engine.requests}
    assert "JOB_COMPLETION_INDEX=2" in by_name["shard"].env and by_name["shard"].hostname == "shard-2"
    assert not any(e.startswith("JOB_COMPLETION_INDEX=") for e in by_name["plain"].env)
    assert by_name["plain"].hostname is None


def test_pulls_use_the_pods_image_pull_secrets(engine: FakeRuntime, secrets: Path) -> None:
    hub = secrets / "default" / "hub"
    hub.mkdir()
    (hub / ".dockerconfigjson").write_text('{"auths": {"reg.example": {"username": "u", "password": "p"}}}')
    pod = PodSpec(
        containers=(ContainerSpec(name="main", image="reg.example/app:1", pull_policy="Always"),),
        image_pull_secrets=("absent", "hub"),
    )
    executor(engine, secrets).execute(runs(Instance(workload(pod=pod), 0, "r")))
    assert engine.pull_auths == {"reg.example/app:1": {"username": "u", "password": "p"}}


def test_a_broken_pull_secret_fails_the_pull_naming_it(engine: FakeRuntime, secrets: Path) -> None:
    bad = secrets / "default" / "bad"
    bad.mkdir()
    (bad / ".dockerconfigjson").write_text("hunter2-secret")
    pod = PodSpec(containers=(ContainerSpec(name="main", image="app:1"),), image_pull_secrets=("bad",))
    inst = Instance(workload(pod=pod), 0, "r")
    out = executor(engine, secrets).execute(runs(inst))
    reason, message = out.failures[inst.id]
    assert reason == "ImagePullFailed" and "imagePullSecret bad/.dockerconfigjson is not JSON" in message
    assert "hunter2" not in message and engine.ops("pull", "run") == []


def test_fs_group_is_a_supplementary_group_and_owns_the_empty_dirs(engine: FakeRuntime, secrets: Path) -> None:
    mounts = (
        Mount(target="/data", type="emptyDir", source="data"),
        Mount(target="/logs", type="hostPath", source="/var/log"),
    )
    pod = PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=mounts),), fs_group=2000)
    plain = PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=mounts),))
    executor(engine, secrets).execute(
        [*runs(Instance(workload("a", pod=pod), 0, "r")), *runs(Instance(workload("b", pod=plain), 0, "r"))]
    )
    by_name = {r.labels["gitops.name"]: r for r in engine.requests}
    assert (by_name["a"].group_add, by_name["a"].owned_dirs) == (("2000",), (("/data", 2000),))
    assert (by_name["b"].group_add, by_name["b"].owned_dirs) == ((), ())


def test_security_context_reaches_the_run_request(engine: FakeRuntime, secrets: Path) -> None:
    security = SecurityContext(privileged=True, cap_add=("NET_ADMIN",), cap_drop=("ALL",), seccomp="Unconfined")
    hardened = SecurityContext(no_new_privileges=True)
    pod = PodSpec(
        containers=(
            ContainerSpec(name="main", image="img", security=security),
            ContainerSpec(name="side", image="img", security=hardened),
        ),
        host_pid=True,
        host_ipc=True,
        sysctls=(("kernel.msgmax", "65536"), ("net.core.somaxconn", "1024")),
    )
    executor(engine, secrets).execute(runs(Instance(workload(pod=pod), 0, "r")))
    main, side = engine.requests
    assert (main.privileged, main.cap_add, main.cap_drop) == (True, ("NET_ADMIN",), ("ALL",))
    assert main.security_opt == ("seccomp=unconfined",) and side.security_opt == ("no-new-privileges",)
    assert (main.pid_mode, main.ipc_mode, side.pid_mode, side.ipc_mode) == ("host", "host", "host", "host")
    # The sidecar shares the first container's network namespace, so only its own IPC sysctl is set on it.
    assert main.sysctls == {"kernel.msgmax": "65536", "net.core.somaxconn": "1024"}
    assert side.sysctls == {"kernel.msgmax": "65536"}


def test_localhost_seccomp_reads_the_nodes_profile_or_fails_the_replica(engine: FakeRuntime, secrets: Path) -> None:
    security = SecurityContext(seccomp="Localhost", seccomp_profile="team/strict.json", no_new_privileges=True)
    inst = Instance(
        workload(pod=PodSpec(containers=(ContainerSpec(name="main", image="img", security=security),))), 0, "r"
    )
    out = executor(engine, secrets).execute(runs(inst))
    reason, message = out.failures[inst.id]
    assert reason == "SeccompProfileMissing" and "team/strict.json" in message
    assert engine.ops("run") == []
    profile = secrets.parent / "seccomp" / "team" / "strict.json"
    profile.parent.mkdir(parents=True)
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    out = executor(engine, secrets).execute(runs(inst))
    assert out.ran == {inst.id}
    assert engine.requests[0].security_opt == ("no-new-privileges", 'seccomp={"defaultAction": "SCMP_ACT_ALLOW"}')


def test_host_path_binds_are_the_normalised_path_admission_judged(engine: FakeRuntime, secrets: Path) -> None:
    mounts = (Mount(target="/h", type="hostPath", source="/srv/../etc", sub_path="ssl"),)
    executor(engine, secrets).execute(
        runs(
            Instance(
                workload(pod=PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=mounts),))), 0, "r"
            )
        )
    )
    assert engine.requests[0].binds == ["/etc/ssl:/h:rw"]
