"""Commit verification end to end on the real engine: only signed revisions are applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import deployment
from tests.helpers import Repo, git, ssh_commit, ssh_key
from tests.integration.test_single_node import converge, reconciler, running

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


def test_unsigned_commit_not_applied_until_signed(repo: Repo, node_name: str, tmp_path: Path) -> None:
    key = ssh_key(tmp_path, "alice", "alice@example.com")
    signers = tmp_path / "allowed_signers"
    signers.write_text(key.line)
    verify = {"mode": "all", "allowed_signers": str(signers)}

    repo.write("apps/web.yaml", deployment("web", 2, engine=True))
    good = ssh_commit(repo, key, "web: 2 replicas")
    rec = reconciler(repo, node_name, tmp_path, verify=verify)
    assert converge(rec).revision == good
    ids = {r["Id"] for r in running(node_name)}
    assert len(ids) == 2
    status = repo.status(node_name)
    assert status["revision"]["sha"] == good and status["revision"]["verified"] is True
    assert not status["errors"]

    # An unsigned commit on top: not applied, nothing running is touched, status says why.
    bad = repo.put("apps/web.yaml", deployment("web", 3, engine=True), "web: 3 replicas, unsigned")
    report = rec.run_pass()
    assert report.revision == good and not report.plan.actions
    assert {r["Id"] for r in running(node_name)} == ids
    status = repo.status(node_name)
    assert status["revision"]["sha"] == good and status["revision"]["verified"] is True
    [error] = [e for e in status["errors"] if e.get("field") == "verify"]
    assert bad in error["message"] and "not signed" in error["message"] and "signer none" in error["message"]
    rec.close()

    # A restart on the same state directory does not take the unsigned tip either.
    rec = reconciler(repo, node_name, tmp_path, verify=verify)
    assert rec.run_pass().revision == good
    assert {r["Id"] for r in running(node_name)} == ids

    # The change, re-committed with a signature (the unsigned commit rewritten away), deploys.
    git(repo.path, "reset", "-q", "--soft", "HEAD~1")
    fixed = ssh_commit(repo, key, "web: 3 replicas, signed")
    assert converge(rec).revision == fixed
    now = {r["Id"] for r in running(node_name)}
    assert len(now) == 3 and ids < now
    status = repo.status(node_name)
    assert status["revision"]["sha"] == fixed and status["revision"]["verified"] is True
    assert not [e for e in status["errors"] if e.get("field") == "verify"]
    rec.close()


def test_mode_off_applies_unsigned_and_reports_unverified(repo: Repo, node_name: str, tmp_path: Path) -> None:
    tip = repo.put("apps/web.yaml", deployment("web", engine=True), "unsigned")
    rec = reconciler(repo, node_name, tmp_path)
    assert converge(rec).revision == tip
    assert repo.status(node_name)["revision"]["verified"] is False
    assert len(running(node_name)) == 1
    rec.close()
