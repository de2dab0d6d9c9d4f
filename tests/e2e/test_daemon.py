"""The real daemon process: triggers, signals, adoption, engine restarts, the network path."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.builders import TEST_IMAGE, deployment
from tests.helpers import (
    DOCKER_HOST,
    ROOT,
    DaemonProcess,
    GitServer,
    Repo,
    SecondEngine,
    bare_repo,
    managed,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("docker_engine")


def running_ids(node: str, host: str = DOCKER_HOST) -> set[str]:
    return {r["Id"] for r in managed(node, host, state="running")}


def n_running(node: str, n: int, host: str = DOCKER_HOST) -> set[str] | None:
    ids = running_ids(node, host)
    return ids if len(ids) == n else None


def start(daemons: list[DaemonProcess], repo: str, node: str, tmp_path: Path, **kw: Any) -> DaemonProcess:
    """A lone daemon: it has no peers to learn of first (it would otherwise settle for two default heartbeats, 20 s)."""
    kw["extra_env"] = {"GITOPS_SETTLE_SECONDS": "0", **kw.get("extra_env", {})}
    d = DaemonProcess(repo, node, tmp_path / f"state-{node}", tmp_path / f"{node}.log", **kw).start()
    daemons.append(d)
    return d


def test_commit_triggers_pass_sigkill_adopts_drift_repaired(
    repo: Repo, node_name: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    # A long interval: only the watched local repository can make this fast.
    d = start(daemons, str(repo.path), node_name, tmp_path, interval=30)
    ids = wait_for(lambda: n_running(node_name, 2), what="2 replicas")
    t0 = time.monotonic()
    repo.put("apps/web.yaml", deployment("web", 3, engine=True))
    wait_for(lambda: len(running_ids(node_name)) == 3, timeout=10, what="third replica after commit")
    assert time.monotonic() - t0 < 10
    ids = running_ids(node_name)

    d.kill(9)
    d2 = start(daemons, str(repo.path), node_name, tmp_path, interval=2)
    wait_for(
        lambda: "pass 1 " in d2.output() or "pass 1 at" in d2.output() or _passed(repo, node_name, ids),
        what="first pass of the restarted daemon",
    )
    time.sleep(2.5)
    assert running_ids(node_name) == ids, "a restarted daemon recreates nothing unchanged"

    client = docker.DockerClient(base_url=DOCKER_HOST)
    victim = sorted(ids)[0]
    client.api.remove_container(victim, force=True)
    wait_for(lambda: len(running_ids(node_name)) == 3, timeout=2 * 2 + 3, what="drift repaired within an interval")
    assert victim not in running_ids(node_name)

    # gitops sync wakes the daemon at once even with a long interval.
    d2.kill(15)
    d3 = start(daemons, str(repo.path), node_name, tmp_path, interval=60)
    wait_for(lambda: (tmp_path / f"state-{node_name}" / "sync.trigger").exists(), what="trigger file")
    time.sleep(1.5)
    victim = sorted(running_ids(node_name))[0]
    client.api.remove_container(victim, force=True)
    subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "gitops.cli",
            "sync",
            "--state-dir",
            str(tmp_path / f"state-{node_name}"),
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "GITOPS_CONFIG": "/nonexistent"},
    )
    wait_for(lambda: len(running_ids(node_name)) == 3, timeout=10, what="repair after gitops sync")

    # SIGTERM stops the daemon and leaves the containers running.
    before = running_ids(node_name)
    assert d3.kill(15) == 0
    assert running_ids(node_name) == before
    client.close()


def _passed(repo: Repo, node: str, ids: set[str]) -> bool:
    return bool(repo.status_yaml(node))


def test_status_branch_follows_changes(
    repo: Repo, node_name: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    start(daemons, str(repo.path), node_name, tmp_path, interval=1)

    def states() -> list[str]:
        return sorted(w["state"] for w in repo.status(node_name).get("workloads", []))

    wait_for(lambda: states() == ["ready", "ready"], what="status shows 2 ready")
    msg = subprocess.run(
        ["git", "-C", str(repo.path), "log", "-1", "--format=%s", f"gitops/status/{node_name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert msg.startswith(f"{node_name}: web 2/2 ready at ")
    repo.remove("apps/web.yaml")
    wait_for(lambda: states() == [] and not managed(node_name), what="status and containers empty after removal")


def test_engine_restart_daemon_reconnects(
    repo: Repo, node_name: str, tmp_path: Path, daemons: list[DaemonProcess], second_engine: SecondEngine
) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    d = start(daemons, str(repo.path), node_name, tmp_path, interval=1, docker_host=second_engine.host)
    wait_for(lambda: len(running_ids(node_name, second_engine.host)) == 2, timeout=30, what="2 replicas")
    second_engine.stop()
    time.sleep(2)
    assert d.alive(), d.output()
    second_engine.start()
    wait_for(
        lambda: len(running_ids(node_name, second_engine.host)) == 2,
        timeout=60,
        what="replicas running again after the engine came back",
    )
    assert d.alive()


def test_git_server_outage_changes_nothing_and_recovers(
    node_name: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bare = bare_repo(tmp_path / "served")
    server = GitServer(bare.parent).start()
    url = server.url()
    work = Repo(tmp_path / "work")
    work.put("apps/web.yaml", deployment("web", 2, engine=True))
    subprocess.run(["git", "-C", str(work.path), "push", "-q", url, "main"], check=True)
    start(daemons, url, node_name, tmp_path, interval=1)
    ids = wait_for(lambda: n_running(node_name, 2), timeout=30, what="2 replicas")
    server.stop()
    time.sleep(3)
    assert running_ids(node_name) == ids, "a Git outage changes nothing that runs"
    server.start()
    try:
        work.put("apps/web.yaml", deployment("web", 3, engine=True))
        subprocess.run(["git", "-C", str(work.path), "push", "-q", url, "main"], check=True)
        wait_for(lambda: len(running_ids(node_name)) == 3, timeout=30, what="recovered after the server returned")
        assert status_of(bare, node_name).get("node") == node_name
    finally:
        server.stop()


def test_quickstart_path(tmp_path: Path, node_name: str) -> None:
    """The README's first command, in --once mode, on a fresh directory."""
    client = docker.DockerClient(base_url=DOCKER_HOST)
    # Tests cannot pull: the template's public image is stood in for by the local test image.
    client.images.get(TEST_IMAGE).tag("busybox", "1.36")
    env = {
        **os.environ,
        "GITOPS_QUICKSTART_DIR": str(tmp_path / "cluster"),
        "GITOPS_NODE": node_name,
        "GITOPS_ONCE": "1",
        "GITOPS_CONFIG": "/nonexistent",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "up.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(running_ids(node_name)) == 2
    cid = sorted(running_ids(node_name))[0]
    out = client.api.exec_start(client.api.exec_create(cid, ["wget", "-qO-", "http://127.0.0.1:8080/"])["Id"])
    assert b"hello from" in out
    client.close()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is required for this test (Debian package systemd)")
    unit = (ROOT / "systemd" / "gitops.service").read_text()
    exe = ROOT / ".venv" / "bin" / "gitops"
    assert exe.exists()
    (tmp_path / "gitops.service").write_text(unit.replace("/usr/local/bin/gitops", str(exe)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "gitops.service")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "Type=notify" in unit and "WatchdogSec=" in unit
