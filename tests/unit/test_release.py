"""``gitops volume release``: a VolumeRelease committed to the tracked branch, read back by the loader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitops.cli import main
from gitops.manifests.load import combine, parse_file
from tests.builders import claim
from tests.helpers import Repo, bare_repo, git


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "op@example.com" if "EMAIL" in var else "op")
    monkeypatch.setenv("GITOPS_CONFIG", str(tmp_path / "none.yaml"))
    path = bare_repo(tmp_path)
    work = Repo(tmp_path / "work")
    work.put("apps/db.yaml", claim("data"))
    git(work.path, "push", "-q", str(path), "main")
    return path


def _file(bare: Path, rel: str) -> str:
    return subprocess.run(["git", "--git-dir", str(bare), "show", f"main:{rel}"], capture_output=True, text=True).stdout


def test_release_commits_a_volume_release_every_node_reads(bare: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["volume", "release", "default/data", "--from", "n2", "--repo", str(bare)]) == 0
    assert main(["volume", "release", "data", "--from", "n1", "--repo", str(bare)]) == 0
    assert "released data on n1 in commit" in capsys.readouterr().out
    text = _file(bare, "volume-releases/default.data.yaml")
    mset = combine({"r.yaml": parse_file("r.yaml", text.encode())})
    assert mset.errors == () and [(r.claim, r.nodes) for r in mset.releases] == [("data", ("n1", "n2"))]
    # Releasing again changes nothing and says so.
    assert main(["volume", "release", "default/data", "--from", "n1", "--repo", str(bare)]) == 2
    assert "already released on n1" in capsys.readouterr().err


def test_release_refuses_a_bad_claim_name(bare: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["volume", "release", "Bad_Name", "--from", "n1", "--repo", str(bare)]) == 2
    assert "Bad_Name" in capsys.readouterr().err
