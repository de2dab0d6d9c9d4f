"""The ``gitops`` verbs that need the engine (plan, status, placement); the others are in tests/unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitops.cli import main
from tests.builders import deployment
from tests.helpers import Repo
from tests.integration.test_single_node import reconciler

pytestmark = pytest.mark.usefixtures("docker_engine")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_status_placement(repo: Repo, node_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    common = ["--repo", str(repo.path), "--node", node_name, "--state-dir", str(tmp_path / "plan-state")]
    code, out, _ = run(capsys, "plan", *common)
    assert code == 1 and out.count("run default/Deployment/web") == 2 and "missing" in out
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    assert run(capsys, "plan", *common)[0] == 0

    code, out, _ = run(capsys, "status", "--repo", str(repo.path), "-o", "json")
    doc = json.loads(out)
    assert code == 0 and [n["name"] for n in doc["nodes"]] == [node_name]
    (web,) = doc["workloads"]
    assert (web["desired"], web["ready"], web["nodes"], web["rollout"]["state"]) == (2, 2, [node_name], "complete")
    code, out, _ = run(capsys, "status", "--repo", str(repo.path))
    assert code == 0 and node_name in out and "default/Deployment/web" in out

    code, out, _ = run(capsys, "placement", "--repo", str(repo.path), "-o", "json")
    assert code == 0 and len(json.loads(out)["nodes"][node_name]) == 2
    code, out, _ = run(capsys, "placement", "--repo", str(repo.path), "--without", node_name, "-o", "json")
    assert code == 0 and len(json.loads(out)["unschedulable"]) == 2
    code, out, _ = run(
        capsys, "placement", "--repo", str(repo.path), "--without", node_name, "--add-node", "spare:cpu=4,memory=8192"
    )
    assert code == 0 and "spare: 2 replica(s)" in out
    assert run(capsys, "placement", "--repo", str(repo.path), "--add-node", "x:bogus=1")[0] == 2
