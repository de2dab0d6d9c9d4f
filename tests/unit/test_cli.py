"""The engine-free ``gitops`` verbs (validate, init, version): no Docker Engine involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitops.cli import TEMPLATE_DIR, main
from tests.builders import deployment
from tests.helpers import ROOT, git


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "web.yaml").write_text(deployment("web", engine=True))
    (good / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n"
    )
    assert run(capsys, "validate", str(good))[0] == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "web.yaml").write_text(deployment("web", engine=True).replace("image:", "imagee:"))
    code, out, _ = run(capsys, "validate", str(bad))
    assert code == 1 and "web.yaml:" in out and "did you mean" in out
    assert run(capsys, "validate", str(tmp_path / "missing"))[0] == 2
    code, out, _ = run(capsys, "validate", "-o", "json", str(bad))
    assert code == 1 and json.loads(out)["errors"][0]["line"]


def test_validate_imports_no_engine_scheduler_or_numpy(tmp_path: Path) -> None:
    # A fresh interpreter: this test process has long imported everything.
    heavy = ("docker", "numpy", "apscheduler", "watchdog", "pynvml")
    code = (
        "import sys; from gitops.cli import main; "
        f"rc = main(['validate', {str(TEMPLATE_DIR)!r}]); "
        f"print(rc, sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []"


def test_init_copies_the_packaged_template_and_commits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cluster"
    assert run(capsys, "init", str(target))[0] == 0
    shipped = sorted(str(p.relative_to(TEMPLATE_DIR)) for p in TEMPLATE_DIR.rglob("*") if p.is_file())
    assert shipped and sorted(git(target, "ls-files").split()) == shipped
    assert git(target, "status", "--porcelain") == ""
    assert git(target, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert run(capsys, "validate", str(target))[0] == 0
    assert run(capsys, "init", str(target))[0] == 2


def test_top_level_template_is_the_packaged_one() -> None:
    # scripts/up.sh, the README and bench/idle.py name repo-template/; it must not drift.
    assert (ROOT / "repo-template").resolve() == TEMPLATE_DIR


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0 and out.startswith("gitops ")
