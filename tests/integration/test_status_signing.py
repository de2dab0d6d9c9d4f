"""Status signing on the real engine: a forged status branch of an unknown node changes nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitops.config import StatusSigningConfig
from gitops.desired import DesiredLoader
from gitops.reconcile.reconciler import Reconciler
from gitops.source import GitSource
from gitops.status import Capacity, NodeStatus, ReplicaStatus, commit_message, dump, utc_now_iso
from tests.builders import deployment, job
from tests.helpers import Repo, SshKey, make_reconciler, managed, ssh_key, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

WEB_V2 = deployment("web", 2, engine=True, env={"V": "2"})
ONCE = job("once", engine=True, command=["sh", "-c", "echo done"])


def spec_hashes(tmp_path: Path, files: dict[str, str]) -> dict[str, str]:
    """Spec hash of each workload (by name) in a repository holding ``files``, as a node would load it."""
    side = Repo(tmp_path / "side")
    for rel, text in files.items():
        side.write(rel, text)
    side.commit()
    src = GitSource(str(side.path), "main", "", tmp_path / "side-state")
    return {w.name: w.spec_hash for w in DesiredLoader(src).load(src.fetch()).workloads}


def forge(repo: Repo, tmp_path: Path, key: SshKey, node: str, web_v1: str, web_v2: str, once: str) -> None:
    """Push a record for ``node``, signed by ``key``, that claims everything it could."""
    future = utc_now_iso(datetime.now(UTC) + timedelta(hours=1))

    def row(kind: str, name: str, replica: int, spec: str, state: str, **more: object) -> ReplicaStatus:
        return ReplicaStatus.model_validate(
            {"namespace": "default", "kind": kind, "name": name, "replica": replica, "specHash": spec,
             "container": f"forged{replica}", "state": state, "since": future, **more}
        )  # fmt: skip

    status = NodeStatus(
        node=node,
        heartbeat=future,
        capacity=Capacity(cpu=2**39, memory=2**39),
        live_nodes=[node],
        workloads=[
            row("Deployment", "web", 0, web_v1, "ready", failedSpecHash=web_v2),
            row("Deployment", "web", 1, web_v1, "ready", failedSpecHash=web_v2),
            row("Job", "once", 0, once, "succeeded", exitCode=0),
        ],
    )
    forger = GitSource(str(repo.path), "main", "", tmp_path / "forger", status_key=key.private)
    forger.fetch()
    forger.push_status(node, dump(status), commit_message(status), 50)


def passes(rec: Reconciler, n: int = 4) -> None:
    for _ in range(n):
        rec.run_pass()
        wait_for(rec.executor.idle, what="background work")


def test_a_forged_status_branch_moves_halts_and_suppresses_nothing(
    repo: Repo, node_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    mine, stranger = ssh_key(keys, "node", node_name), ssh_key(keys, "stranger", "ghost")
    signers = tmp_path / "node_signers"
    signers.write_text(mine.line)  # the stranger's key is nobody's
    web_v1 = deployment("web", 2, engine=True)
    repo.put("apps/web.yaml", web_v1)
    hashes = spec_hashes(tmp_path, {"apps/web.yaml": WEB_V2, "jobs/once.yaml": ONCE})
    signing = StatusSigningConfig(key=mine.private, allowed_signers=signers)
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state", interval=1, status_signing=signing)
    passes(rec)
    before = {r["Id"] for r in managed(node_name, state="running")}
    assert len(before) == 2
    v1 = rec.loader.load(rec.source.head()).workloads[0].spec_hash
    forge(repo, tmp_path, stranger, "ghost", v1, hashes["web"], hashes["once"])

    with caplog.at_level(logging.WARNING, logger="gitops.cluster"):
        passes(rec)
        # Moves nothing: the forged claims, huge capacity and future heartbeat do not count.
        assert {r["Id"] for r in managed(node_name, state="running")} == before
        own = repo.status(node_name)
        assert own["liveNodes"] == [node_name]
        # Halts nothing, suppresses nothing: the new spec rolls out and the Job runs here.
        repo.put("apps/web.yaml", WEB_V2)
        repo.put("jobs/once.yaml", ONCE)
        passes(rec, 8)
    rows = {(w["name"], w["replica"]): w for w in repo.status(node_name)["workloads"]}
    assert rows[("web", 0)]["specHash"] == rows[("web", 1)]["specHash"] == hashes["web"]
    assert {rows[("web", i)]["state"] for i in (0, 1)} <= {"running", "ready"}
    assert not before & {r["Id"] for r in managed(node_name, state="running")}
    assert rows[("once", 0)]["specHash"] == hashes["once"] and rows[("once", 0)]["state"] == "succeeded"
    assert rows[("once", 0)]["container"] not in ("forged0", None)
    # The forged record is named and logged once, not once per pass.
    rejected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("status of ghost")]
    assert len(rejected) == 1 and "status commit not signed by node ghost" in rejected[0]
