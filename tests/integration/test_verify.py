"""Commit verification end to end on the real engine: only signed revisions are applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.reconcile.reconciler import PassFailed
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


def in_ns(text: str, namespace: str) -> str:
    return text.replace("metadata:\n", f"metadata:\n  namespace: {namespace}\n", 1)


def ids_of(node: str, name: str) -> set[str]:
    return {str(r["Id"]) for r in running(node) if f".{name}." in str(r["Names"])}


def test_team_namespaces_hold_what_a_team_may_not_change(repo: Repo, node_name: str, tmp_path: Path) -> None:
    alice = ssh_key(tmp_path, "alice", "alice@example.com")
    bob = ssh_key(tmp_path, "bob", "bob@example.com")
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.line + bob.line)
    namespaces = {"team-a": ["alice@example.com"], "team-b": ["bob@example.com"]}
    verify = {"mode": "all", "allowed_signers": str(signers), "namespaces": namespaces}

    repo.write("a.yaml", in_ns(deployment("web-a", 1, engine=True), "team-a"))
    ssh_commit(repo, alice, "team-a")
    repo.write("b.yaml", in_ns(deployment("web-b", 1, engine=True), "team-b"))
    ssh_commit(repo, bob, "team-b")
    rec = reconciler(repo, node_name, tmp_path, verify=verify)
    start = converge(rec).revision
    b_ids = ids_of(node_name, "web-b")
    assert len(ids_of(node_name, "web-a")) == 1 and len(b_ids) == 1

    # Alice scales team-a and, in the same commit, changes team-b's Deployment.
    repo.write("a.yaml", in_ns(deployment("web-a", 2, engine=True), "team-a"))
    repo.write("b.yaml", in_ns(deployment("web-b", 1, engine=True, env={"MODE": "alice"}), "team-b"))
    sneaked = ssh_commit(repo, alice, "alice: team-a to 2, and team-b's env")
    assert converge(rec).revision == sneaked
    assert len(ids_of(node_name, "web-a")) == 2
    assert ids_of(node_name, "web-b") == b_ids  # team-b keeps its old spec: same container
    status = repo.status(node_name)
    assert status["revision"]["sha"] == sneaked and status["revision"]["verified"] is True
    [held] = status["revision"]["held"]
    assert held["namespace"] == "team-b" and held["sha"] == start and held["commit"] == sneaked
    assert held["signer"] == "alice@example.com" and "may not change namespace team-b" in held["reason"]
    rec.close()

    # A restart remembers the hold; then Bob's own change to team-b moves it on.
    rec = reconciler(repo, node_name, tmp_path, verify=verify)
    converge(rec)
    assert ids_of(node_name, "web-b") == b_ids
    repo.write("b.yaml", in_ns(deployment("web-b", 2, engine=True, env={"MODE": "bob"}), "team-b"))
    tip = ssh_commit(repo, bob, "bob: team-b to 2")
    assert converge(rec).revision == tip
    now = ids_of(node_name, "web-b")
    assert len(now) == 2 and not now & b_ids
    assert "held" not in repo.status(node_name)["revision"]
    rec.close()


def test_first_refused_tip_publishes_why(repo: Repo, node_name: str, tmp_path: Path) -> None:
    key = ssh_key(tmp_path, "alice", "alice@example.com")
    signers = tmp_path / "allowed_signers"
    signers.write_text(key.line)
    tip = repo.put("apps/web.yaml", deployment("web", engine=True), "unsigned")
    rec = reconciler(repo, node_name, tmp_path, verify={"mode": "all", "allowed_signers": str(signers)})
    with pytest.raises(PassFailed, match="not signed"):
        rec.run_pass()
    status = repo.status(node_name)
    # No heartbeat: peers never count the node live, so nothing is placed on it meanwhile.
    assert status["heartbeat"] == "" and status["revision"]["sha"] == "" and not status["workloads"]
    [error] = status["errors"]
    assert error["field"] == "verify" and tip in error["message"] and "no verified revision" in error["message"]
    assert not running(node_name)
    rec.close()
