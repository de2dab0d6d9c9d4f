"""The Git adapter against real repositories: force-push, history, status pushes, no leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.source import GitError, GitSource
from tests.helpers import Repo, git


def test_fetch_list_read_and_history(repo: Repo, tmp_path: Path) -> None:
    repo.put("apps/a.yaml", "v1\n")
    repo.put("apps/a.yaml", "v2\n")
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    head = src.fetch()
    assert head == repo.head()
    files = {e.path: e.blob for e in src.list_files(head)}
    assert src.read_blobs([files["apps/a.yaml"]]) == {files["apps/a.yaml"]: b"v2\n"}
    old = src.path_history(head, "apps/a.yaml", 10)
    assert [src.read_blobs([b])[b] for b in old] == [b"v1\n"]


def test_subpath_and_force_push(repo: Repo, tmp_path: Path) -> None:
    repo.put("deploy/x.yaml", "x\n")
    repo.put("other/y.yaml", "y\n")
    src = GitSource(str(repo.path), "main", "deploy", tmp_path / "state")
    assert [e.path for e in src.list_files(src.fetch())] == ["x.yaml"]
    git(repo.path, "reset", "-q", "--hard", "HEAD~2")
    repo.put("deploy/z.yaml", "z\n")
    assert [e.path for e in src.list_files(src.fetch())] == ["z.yaml"]


def test_status_branch_bounded_history(repo: Repo, tmp_path: Path) -> None:
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    src.fetch()
    for i in range(12):
        src.push_status("n1", f"i: {i}\n".encode(), f"n1: {i}", max_history=5)
    assert git(repo.path, "show", "gitops/status/n1:status.yaml") == "i: 11\n"
    depth = int(git(repo.path, "rev-list", "--count", "gitops/status/n1"))
    assert 1 <= depth <= 5
    src.fetch()
    assert src.read_status_files(src.status_heads()) == {"n1": b"i: 11\n"}


def test_unreachable_repo_is_a_git_error(tmp_path: Path) -> None:
    src = GitSource(str(tmp_path / "nowhere"), "main", "", tmp_path / "state")
    with pytest.raises(GitError):
        src.fetch()
