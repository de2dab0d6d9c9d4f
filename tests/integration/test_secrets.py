"""A secret's value, used through secretKeyRef by a workload that prints it, reaches nothing the node publishes."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from gitops.cli import main
from tests.builders import job
from tests.helpers import Repo
from tests.integration.test_single_node import failed_row, reconciler

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

CANARY = "canary-7f3a9c1e-do-not-publish"


def test_secret_canary_never_leaves_the_node(
    repo: Repo, node_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secrets" / "default" / "db" / "password"
    secret.parent.mkdir(parents=True)
    secret.write_text(CANARY + "\n")
    container = """\
        env:
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
        """
    # The container prints its whole environment (the canary among it) and fails.
    command = ["sh", "-c", 'env; echo "pw=$DB_PASSWORD"; exit 3']
    repo.put("jobs/leak.yaml", job("leak", engine=True, command=command, spec="backoffLimit: 0", container=container))

    def plan() -> str:
        state, secrets = str(tmp_path / "plan-state"), str(tmp_path / "secrets")
        argv = ["--repo", str(repo.path), "--node", node_name, "--state-dir", state, "--secrets-dir", secrets]
        code = main(["plan", *argv])
        out, err = capsys.readouterr()
        assert code in (0, 1), err
        return out + err

    # Before the node acts, plan lists the run; after, nothing is left to do. Neither shows the value.
    plan_before = plan()
    assert "run default/Job/leak" in plan_before
    # The CLI installs its own root handler (its log goes to stderr, checked above): put caplog's back.
    logging.getLogger().addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    rec = reconciler(repo, node_name, tmp_path, status_logs=True)

    row = failed_row(rec, repo, node_name)
    # The output did reach status (the node opted in), with the value masked.
    assert "pw=***" in str(row.get("message")), row

    assert CANARY not in repo.status_yaml(node_name)

    def git_out(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo.path), *args], capture_output=True, text=True, check=True).stdout

    # Every commit on every branch, the node's status branch among them, with full diffs.
    assert f"gitops/status/{node_name}" in git_out("branch", "-a")
    history = git_out("log", "-p", "--all", "--format=%H %B")
    assert history and CANARY not in history

    # The daemon's log for the whole run, down to DEBUG (the engine client's requests included).
    assert any(r.name.startswith("gitops") for r in caplog.records)
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()

    assert CANARY not in plan_before + plan()
