"""One node, in process, against the real engine and real repositories (issue 2's done-means)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import docker
import pytest

from gitops.admission import Policy
from gitops.reconcile.reconciler import PassReport, Reconciler
from gitops.runtime.base import RunRequest, RuntimeFailure
from gitops.runtime.docker import DockerRuntime
from tests.builders import INFER, SERVE, TEST_IMAGE, deployment, job
from tests.helpers import DOCKER_HOST, Repo, git, make_reconciler, managed, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")


def reconciler(repo: Repo | str, node: str, tmp_path: Path, **overrides: object) -> Reconciler:
    """An in-process node with fixed capacity and no GPUs, passing every second."""
    url = str(repo.path) if isinstance(repo, Repo) else repo
    return make_reconciler(url, node, tmp_path / f"state-{node}", **{"interval": 1, **overrides})


def converge(rec: Reconciler, passes: int = 10) -> PassReport:
    """Run passes until one has nothing left to do (a rolling update takes several)."""
    for _ in range(passes):
        report = rec.run_pass()
        if not report.plan.actions and not report.plan.waiting:
            # Old containers of a rollout are removed in the background: wait for them too.
            wait_for(rec.executor.idle, what="background removals")
            return report
    raise AssertionError(f"not converged after {passes} passes: {report.plan.waiting}")


def failed_row(rec: Reconciler, repo: Repo, node: str) -> dict[str, object]:
    """Run passes until the node's first status row is ``failed`` (a Job out of retries); return it."""

    def failed() -> dict[str, object] | None:
        rec.run_pass()
        rows = repo.status(node)["workloads"]
        assert isinstance(rows, list)
        return rows[0] if rows and rows[0]["state"] == "failed" else None

    row: dict[str, object] = wait_for(failed, timeout=30, interval=0.3, what="job failed for good")
    return row


def running(node: str) -> list[dict[str, object]]:
    return managed(node, state="running")


def test_deploy_update_revert_remove(repo: Repo, node_name: str, tmp_path: Path) -> None:
    (tmp_path / "secrets" / "default" / "db").mkdir(parents=True)
    (tmp_path / "secrets" / "default" / "db" / "password").write_text("s3cret\n")

    def manifest(mode: str) -> str:
        return deployment(
            "web",
            2,
            engine=True,
            container=f"""\
                env:
                - {{name: MODE, value: {mode}}}
                - name: DB_PASSWORD
                  valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
                ports: [{{containerPort: 8080, protocol: TCP}}]
                resources: {{limits: {{cpu: 250m, memory: 64Mi}}}}
                """,
        )

    v1 = repo.put("apps/web.yaml", manifest("one"))
    rec = reconciler(repo, node_name, tmp_path)
    report = rec.run_pass()
    assert report.ok, report.errors
    rows = running(node_name)
    assert len(rows) == 2
    client = docker.DockerClient(base_url=DOCKER_HOST)
    info = client.api.inspect_container(rows[0]["Id"])
    labels = info["Config"]["Labels"]
    assert labels["gitops.managed"] == "true" and labels["gitops.node"] == node_name
    assert labels["gitops.kind"] == "Deployment" and labels["gitops.name"] == "web"
    assert labels["gitops.namespace"] == "default" and labels["gitops.revision"] == v1
    assert len(labels["gitops.spec-hash"]) == 64
    assert {r["Labels"]["gitops.replica"] for r in rows} == {"0", "1"}
    assert info["HostConfig"]["NanoCpus"] == 250_000_000
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert "MODE=one" in info["Config"]["Env"] and "DB_PASSWORD=s3cret" in info["Config"]["Env"]
    assert "8080/tcp" in info["Config"]["ExposedPorts"]
    st = repo.status(node_name)
    assert st["revision"]["sha"] == v1
    assert sorted(w["state"] for w in st["workloads"]) == ["ready", "ready"]
    assert "s3cret" not in repo.status_yaml(node_name)
    old_hash = labels["gitops.spec-hash"]
    old_ids = {r["Id"] for r in rows}

    repo.put("apps/web.yaml", manifest("two"))
    assert converge(rec).ok
    rows = running(node_name)
    assert len(rows) == 2 and not ({r["Id"] for r in rows} & old_ids)
    new_hash = rows[0]["Labels"]["gitops.spec-hash"]
    assert new_hash != old_hash and all(r["Labels"]["gitops.spec-hash"] == new_hash for r in rows)
    assert len(managed(node_name)) == 2, "old containers are removed, not left stopped"
    assert {w["specHash"] for w in repo.status(node_name)["workloads"]} == {new_hash}

    repo.revert()
    assert converge(rec).ok
    rows = running(node_name)
    assert len(rows) == 2 and {r["Labels"]["gitops.spec-hash"] for r in rows} == {old_hash}

    repo.remove("apps/web.yaml")
    assert rec.run_pass().ok
    # Removal runs off the pass; until the containers are gone they are reported as terminating.
    assert {(w["state"], w["reason"]) for w in repo.status(node_name)["workloads"]} <= {("running", "Terminating")}
    wait_for(lambda: managed(node_name) == [], what="pruned containers gone")
    assert rec.run_pass().ok
    assert repo.status(node_name)["workloads"] == []
    client.close()


def test_invalid_yaml_keeps_running_and_reports(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    repo.put("apps/other.yaml", deployment("other", engine=True))
    rec = reconciler(repo, node_name, tmp_path)
    assert rec.run_pass().ok
    before = {r["Id"] for r in running(node_name)}
    assert len(before) == 3
    # Broken YAML in one file, a typo in the other: nothing running may change.
    repo.write("apps/web.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web\n")
    repo.put("apps/other.yaml", deployment("other", engine=True).replace("image:", "imagee:"))
    report = rec.run_pass()
    assert not report.ok
    assert {r["Id"] for r in running(node_name)} == before
    st = repo.status(node_name)
    files = {(e["file"], e.get("line")) for e in st["errors"]}
    assert any(f == "apps/web.yaml" and line for f, line in files), st["errors"]
    assert any(f == "apps/other.yaml" and line for f, line in files), st["errors"]
    # Drift is still repaired for workloads kept at their last valid spec.
    docker.DockerClient(base_url=DOCKER_HOST).api.remove_container(sorted(before)[0], force=True)
    rec.run_pass()
    assert len(running(node_name)) == 3


def test_drift_repair_and_unlabelled_untouched(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    client = docker.DockerClient(base_url=DOCKER_HOST)
    stranger = client.containers.run(TEST_IMAGE, ["sleep", "300"], detach=True, labels={"app": "mine"})
    try:
        rows = running(node_name)
        client.api.remove_container(rows[0]["Id"], force=True)
        client.api.stop(rows[1]["Id"], timeout=1)
        assert rec.run_pass().ok
        after = running(node_name)
        assert len(after) == 2
        assert rows[1]["Id"] in {r["Id"] for r in after}, "a stopped container is restarted in place"
        stranger.reload()
        assert stranger.status == "running"
    finally:
        stranger.remove(force=True)
        client.close()


def test_adopt_after_restart_recreates_nothing(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    reconciler(repo, node_name, tmp_path).run_pass()
    ids = {r["Id"] for r in running(node_name)}
    fresh = reconciler(repo, node_name, tmp_path)
    report = fresh.run_pass()
    assert report.plan.actions == []
    assert {r["Id"] for r in running(node_name)} == ids


def test_host_to_container_propagation_reaches_docker(repo: Repo, node_name: str, tmp_path: Path) -> None:
    host = tmp_path / "host-logs"
    host.mkdir()
    (host / "seen.txt").write_text("from the host\n")
    repo.put(
        "apps/agent.yaml",
        deployment(
            "agent",
            1,
            engine=True,
            pod=f"volumes: [{{name: logs, hostPath: {{path: {host}}}}}]",
            container="volumeMounts: [{name: logs, mountPath: /host, readOnly: true,"
            " mountPropagation: HostToContainer}]",
        ),
    )
    # baseline admits a hostPath under an allowed prefix only (docs/security.md).
    reconciler(repo, node_name, tmp_path, policy=Policy(host_paths=[str(host)])).run_pass()
    [row] = running(node_name)
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        container = client.containers.get(row["Id"])
        [mount] = container.attrs["Mounts"]
        assert (mount["Destination"], mount["Propagation"], mount["RW"]) == ("/host", "rslave", False)
        assert container.exec_run(["cat", "/host/seen.txt"]).output == b"from the host\n"


@pytest.mark.parametrize("read_only_root", [False, True])
def test_fs_group_lets_a_non_root_user_write_its_empty_dir(
    repo: Repo, node_name: str, tmp_path: Path, read_only_root: bool
) -> None:
    read_only = "\nsecurityContext: {readOnlyRootFilesystem: true}" if read_only_root else ""
    repo.put(
        "apps/writer.yaml",
        deployment(
            "writer",
            1,
            engine=True,
            command=["sh", "-c", "id -G > /data/groups && stat -c '%u %g %a' /data > /data/owner && sleep 3600"],
            grace_s=1,
            pod="securityContext: {runAsUser: 1000, fsGroup: 2000}\nvolumes: [{name: data, emptyDir: {}}]",
            container="volumeMounts: [{name: data, mountPath: /data}]" + read_only,
        ),
    )
    reconciler(repo, node_name, tmp_path).run_pass()
    [row] = running(node_name)
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        container = client.containers.get(row["Id"])

        def read(f: str) -> bytes:
            out: bytes = wait_for(lambda: (r := container.exec_run(["cat", f])).exit_code == 0 and r.output, what=f)
            return out

        assert read("/data/owner") == b"0 2000 2775\n"
        assert "2000" in read("/data/groups").decode().split()


def test_a_container_whose_fs_group_cannot_be_applied_is_not_left_behind(node_name: str) -> None:
    runtime = DockerRuntime(DOCKER_HOST)
    labels = {"gitops.managed": "true", "gitops.node": node_name}
    request = RunRequest(f"owned-{node_name}", TEST_IMAGE, labels, command=SERVE, read_only=True,
                         owned_dirs=(("/missing/data", 2000),))  # fmt: skip
    try:
        with pytest.raises(RuntimeFailure):
            runtime.run(request)
    finally:
        runtime.close()
    # Left "created", the retry would start it without its fsGroup.
    assert managed(node_name) == []


def test_image_pull_failure_reported_others_keep_running(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", engine=True))
    repo.put("apps/infer.yaml", INFER)
    rec = reconciler(repo, node_name, tmp_path)
    report = rec.run_pass()
    assert len(running(node_name)) == 1
    assert {r for r, (reason, _) in report.outcome.failures.items() if reason == "ImagePullFailed"} == {
        ("default/Deployment/infer", i) for i in range(3)
    }
    st = repo.status(node_name)
    infer = [w for w in st["workloads"] if w["name"] == "infer"]
    assert len(infer) == 3 and all(w["reason"] == "ImagePullFailed" for w in infer)


def test_job_runs_once_per_spec_and_result_kept(repo: Repo, node_name: str, tmp_path: Path) -> None:

    def once(version: str) -> str:
        return job("once", engine=True, command=["sh", "-c", f"echo done {version}"])

    repo.put("jobs/once.yaml", once("v1"))
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    wait_for(lambda: all(r["State"] == "exited" for r in managed(node_name)), what="job exit")
    rec.run_pass()
    rows = managed(node_name)
    assert len(rows) == 1 and rows[0]["State"] == "exited"
    assert [w["state"] for w in repo.status(node_name)["workloads"]] == ["succeeded"]
    docker.DockerClient(base_url=DOCKER_HOST).api.remove_container(rows[0]["Id"])
    # A restarted daemon remembers the result from its own status branch: no rerun.
    fresh = reconciler(repo, node_name, tmp_path)
    fresh.run_pass()
    assert managed(node_name) == []
    repo.put("jobs/once.yaml", once("v2"))
    fresh.run_pass()
    assert len(managed(node_name)) == 1


def test_force_push_converges(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/a.yaml", deployment("a", engine=True))
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    base = repo.head()
    repo.put("apps/b.yaml", deployment("b", engine=True))
    rec.run_pass()
    assert len(running(node_name)) == 2
    git(repo.path, "reset", "-q", "--hard", base + "~1")  # rewrite history below both
    repo.put("apps/c.yaml", deployment("c", engine=True))
    assert rec.run_pass().ok
    names = sorted(r["Labels"]["gitops.name"] for r in running(node_name))
    assert names == ["c"]


def test_git_outage_keeps_state_and_recovers(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/a.yaml", deployment("a", engine=True))
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    ids = {r["Id"] for r in running(node_name)}
    moved = repo.path.with_name("cluster-away")
    repo.path.rename(moved)
    try:
        report = rec.run_pass()
        assert not report.ok and any("fetch failed" in e.message for e in report.errors)
        assert {r["Id"] for r in running(node_name)} == ids
    finally:
        moved.rename(repo.path)
    repo.put("apps/b.yaml", deployment("b", engine=True))
    assert rec.run_pass().ok
    assert len(running(node_name)) == 2


def test_thousand_passes_leak_no_processes_or_file_handles(repo: Repo, node_name: str, tmp_path: Path) -> None:
    import os

    repo.put("apps/web.yaml", deployment("web", engine=True))
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def children() -> int:
        me = str(os.getpid())
        count = 0
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/stat") as f:
                        count += f.read().rsplit(")", 1)[1].split()[1] == me
                except OSError:
                    pass
        return count

    before = (fds(), children())
    for _ in range(1000):
        assert rec.run_pass().ok
    assert (fds(), children()) == before
    assert len(running(node_name)) == 1


def test_job_active_deadline_stops_and_fails_it(repo: Repo, node_name: str, tmp_path: Path) -> None:
    slow = job("slow", engine=True, command=SERVE, grace_s=1, spec="activeDeadlineSeconds: 1")
    repo.put("jobs/slow.yaml", slow)
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    assert len(running(node_name)) == 1
    time.sleep(1.5)
    rec.run_pass()
    wait_for(lambda: not running(node_name), what="the job stopped at its deadline")
    assert len(managed(node_name)) == 1, "stopped, not removed: its logs stay"
    rec.run_pass()
    (row,) = repo.status(node_name)["workloads"]
    assert (row["state"], row["reason"]) == ("failed", "DeadlineExceeded")
    assert not running(node_name), "a failed Job is not restarted"


@pytest.mark.parametrize("status_logs", [False, True])
def test_failing_job_retried_up_to_backoff_limit(repo: Repo, node_name: str, tmp_path: Path, status_logs: bool) -> None:
    secret = tmp_path / "secrets" / "default" / "db" / "password"
    secret.parent.mkdir(parents=True)
    secret.write_text("hunter2-s3cret\n")
    command = ["sh", "-c", "echo broken hunter2-s3cret; exit 3"]
    repo.put("jobs/bad.yaml", job("bad", engine=True, command=command, spec="backoffLimit: 2"))
    rec = reconciler(repo, node_name, tmp_path, backoff_scale=0.02, status_logs=status_logs)

    row = failed_row(rec, repo, node_name)
    assert (row["reason"], row["exitCode"], row["restarts"]) == ("BackoffLimitExceeded", 3, 2)
    # Container output reaches Git only where the node opts in, and never with a secret's value.
    assert ("broken ***" in str(row.get("message"))) is status_logs
    assert "hunter2" not in repo.status_yaml(node_name)
    rec.run_pass()
    assert [r["State"] for r in managed(node_name)] == ["exited"], "not restarted past the limit"


def test_heartbeats_go_on_when_passes_fail_and_say_why(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("cluster.yaml", "apiVersion: gitops/v1\nkind: Cluster\nmetadata: {name: c}\nspec: {heartbeatSeconds: 1}\n")
    rec = reconciler(repo, node_name, tmp_path)
    assert rec.run_pass().ok
    first = repo.status(node_name)["heartbeat"]
    assert rec.heartbeat() is False, "a heartbeat is not due yet"
    # The pass loop is stuck or failing: the heartbeat thread publishes, with the reason.
    rec.pass_error = "docker engine unreachable"
    for _ in range(2):
        assert wait_for(rec.heartbeat, timeout=5, interval=0.2, what="an overdue heartbeat")
    st = repo.status(node_name)
    assert st["heartbeat"] > first
    assert [e["message"] for e in st["errors"]] == ["pass failing: docker engine unreachable"]
