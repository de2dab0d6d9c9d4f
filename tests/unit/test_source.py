"""The Git adapter against real repositories: force-push, history, status pushes, untrusted content."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from gitops import source
from gitops.desired import MAX_MANIFEST_BYTES, DesiredLoader
from gitops.source import GIT_TIMEOUT_FLOOR_S, GitError, GitSource, TooLarge
from tests.builders import deployment
from tests.helpers import Repo, git


def test_fetch_list_read_and_history(repo: Repo, tmp_path: Path) -> None:
    repo.put("apps/a.yaml", "v1\n")
    repo.put("apps/a.yaml", "v2\n")
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    head = src.fetch()
    assert head == repo.head()
    files = {e.path: e.blob for e in src.list_files(head)}
    assert src.read_blobs([files["apps/a.yaml"]], 100) == {files["apps/a.yaml"]: b"v2\n"}
    old = src.path_history(head, "apps/a.yaml", 10)
    assert [src.read_blobs([b], 100)[b] for b in old] == [b"v1\n"]


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
    # A restarted daemon (a new GitSource on the same mirror) reads where the branch stands and
    # goes on from there: one more commit on top, or a fresh root at the bound.
    tip = git(repo.path, "rev-parse", "gitops/status/n1").strip()
    GitSource(str(repo.path), "main", "", tmp_path / "state").push_status("n1", b"i: 12\n", "n1: 12", max_history=5)
    parents = git(repo.path, "log", "-1", "--format=%P", "gitops/status/n1").split()
    assert parents == ([tip] if depth < 5 else [])
    assert int(git(repo.path, "rev-list", "--count", "gitops/status/n1")) == (depth + 1 if depth < 5 else 1)


def test_unreachable_repo_is_a_git_error(tmp_path: Path) -> None:
    src = GitSource(str(tmp_path / "nowhere"), "main", "", tmp_path / "state")
    with pytest.raises(GitError):
        src.fetch()


# Git as untrusted input ----------------------------------------------------------------------


def _recording(src: GitSource) -> list[int]:
    """Make ``src`` record how many bytes each git command wrote to it."""
    sizes: list[int] = []
    run = src.git

    def git(*args: str, **kw: Any) -> bytes:
        out = run(*args, **kw)
        sizes.append(len(out))
        return out

    src.git = git  # type: ignore[method-assign]
    return sizes


def test_paths_are_literal_never_patterns(repo: Repo, tmp_path: Path) -> None:
    for version in ("1", "2"):
        repo.write("apps/a.yaml", f"a{version}\n")
        repo.write("apps/*.yaml", f"star{version}\n")
        repo.write("b.yaml", f"b{version}\n")
        repo.write(":(glob)*.yaml", f"magic{version}\n")
        repo.commit(f"v{version}")
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    head = src.fetch()

    def history(path: str) -> list[bytes]:
        return [v for b in src.path_history(head, path, 10) if isinstance(v := src.read_blobs([b], 100)[b], bytes)]

    assert history("apps/*.yaml") == [b"star1\n"]
    assert history("apps/a.yaml") == [b"a1\n"]
    assert history(":(glob)*.yaml") == [b"magic1\n"]
    assert history("b.yaml") == [b"b1\n"]
    assert src.read_blobs([f"{head}:apps/*.yaml"], 100) == {f"{head}:apps/*.yaml": b"star2\n"}


def test_subpath_is_literal(repo: Repo, tmp_path: Path) -> None:
    repo.put(":(glob)d*/x.yaml", "x\n")
    repo.put("deploy/y.yaml", "y\n")
    src = GitSource(str(repo.path), "main", ":(glob)d*", tmp_path / "state")
    assert [e.path for e in src.list_files(src.fetch())] == ["x.yaml"]


def test_oversized_blob_is_sized_not_read(repo: Repo, tmp_path: Path) -> None:
    repo.put("big.yaml", "x" * 50_000)
    repo.put("small.yaml", "s\n")
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    files = {e.path: e.blob for e in src.list_files(src.fetch())}
    sizes = _recording(src)
    got = src.read_blobs([files["big.yaml"], files["small.yaml"], "0" * 40], 10_000)
    assert got == {files["big.yaml"]: TooLarge(50_000, 10_000), files["small.yaml"]: b"s\n"}
    assert max(sizes) < 10_000


def test_oversized_manifest_is_an_error_and_keeps_its_workloads(repo: Repo, tmp_path: Path) -> None:
    web = deployment("web", 1, engine=True)
    repo.put("apps/web.yaml", web)
    head = repo.put("apps/web.yaml", web + "#" * MAX_MANIFEST_BYTES)
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    assert src.fetch() == head
    sizes = _recording(src)
    mset = DesiredLoader(src).load(head)
    assert [w.key for w in mset.workloads] == ["default/Deployment/web"]
    assert mset.unreadable_files == ("apps/web.yaml",)
    [error] = mset.errors
    assert error.file == "apps/web.yaml"
    assert f"over the {MAX_MANIFEST_BYTES}-byte limit" in error.message
    assert max(sizes) < MAX_MANIFEST_BYTES


def test_oversized_status_is_refused_unread(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    src.fetch()
    src.push_status("small", b"node: small\n", "small", max_history=5)
    src.push_status("big", b"node: big\n" + b"#" * 100, "big", max_history=5)
    monkeypatch.setattr(source, "STATUS_MAX_BYTES", 50)
    assert src.read_status_files(src.status_heads()) == {
        "small": b"node: small\n",
        "big": "status.yaml file is 110 bytes, over the 50-byte limit; not read",
    }


def test_timeout_has_a_floor(repo: Repo, tmp_path: Path) -> None:
    src = GitSource(str(repo.path), "main", "", tmp_path / "state", timeout=0.001)
    assert src.timeout == GIT_TIMEOUT_FLOOR_S
    for low in (0.0, -1.0, float("nan")):
        src.timeout = low
        assert src.timeout == GIT_TIMEOUT_FLOOR_S
    assert src.fetch() == repo.head()  # a real fetch takes longer than the 1 ms asked for
    src.timeout = 30.0
    assert src.timeout == 30.0


def test_mirror_config_and_replace_refs_change_nothing(repo: Repo, tmp_path: Path) -> None:
    repo.put("a.yaml", "a\n")
    repo.put("b.yaml", "b\n")
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    files = {e.path: e.blob for e in src.list_files(src.fetch())}
    git(src.mirror, "replace", files["a.yaml"], files["b.yaml"])
    assert src.read_blobs([files["a.yaml"]], 100) == {files["a.yaml"]: b"a\n"}
    hooks, ran = tmp_path / "hooks", tmp_path / "hook-ran"
    hooks.mkdir()
    for name in ("reference-transaction", "pre-push"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {ran}\n")
        (hooks / name).chmod(0o755)
    git(src.mirror, "config", "core.hooksPath", str(hooks))
    repo.put("c.yaml", "c\n")
    src.fetch()
    src.push_status("n1", b"node: n1\n", "n1", max_history=5)
    assert not ran.exists()


def test_stale_lock_is_cleared_and_the_fetch_retried(
    repo: Repo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = GitSource(str(repo.path), "main", "", tmp_path / "state", timeout=5)
    src.fetch()
    head = repo.put("a.yaml", "a\n")
    lock = src.mirror / "refs" / "gitops" / "head.lock"
    lock.touch()
    with pytest.raises(GitError, match=r"head\.lock': File exists"):
        src.fetch()  # a lock this young may belong to a running git: left alone
    assert lock.exists()
    old = time.time() - 11  # over STALE_LOCK_TIMEOUTS git timeouts
    os.utime(lock, (old, old))
    assert src.fetch() == head
    assert not lock.exists()
    assert caplog.text.count("removed stale git lock files from the mirror: refs/gitops/head.lock") == 1


def test_stale_locks_are_cleared_at_start(repo: Repo, tmp_path: Path) -> None:
    GitSource(str(repo.path), "main", "", tmp_path / "state").fetch()
    locks = [tmp_path / "state" / "mirror.git" / name for name in ("config.lock", "packed-refs.lock", "HEAD.lock")]
    old = time.time() - 3600
    for lock in locks:
        lock.touch()
        os.utime(lock, (old, old))
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    assert not any(lock.exists() for lock in locks)
    assert src.fetch() == repo.head()


def test_compaction_packs_loose_objects(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "COMPACT_EVERY_WRITES", 6)
    monkeypatch.setattr(source, "COMPACT_LOOSE_OBJECTS", 12)
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    src.fetch()
    for i in range(4):  # three new objects each (blob, tree, commit), history cut every 2
        src.push_status("n1", f"i: {i}\n".encode(), f"n1: {i}", max_history=2)
    assert src.loose_objects() >= 12  # five writes: not checked yet
    src.push_status("n1", b"i: 4\n", "n1: 4", max_history=2)
    assert src.loose_objects() == 0  # unreachable ones too: they went into a cruft pack
    src.fetch()
    assert src.read_status_files(src.status_heads()) == {"n1": b"i: 4\n"}


def test_compaction_waits_for_enough_loose_objects(repo: Repo, tmp_path: Path) -> None:
    src = GitSource(str(repo.path), "main", "", tmp_path / "state")
    src.fetch()
    src.push_status("n1", b"i: 0\n", "n1: 0", max_history=2)
    before = src.loose_objects()
    assert before >= 3
    assert not src.compact()
    assert src.loose_objects() == before


def test_mirror_keeping_the_url_is_private_whatever_the_umask(repo: Repo, tmp_path: Path) -> None:
    repo.put("apps/a.yaml", "v1\n")
    url = "https://deploy:s3cr3t-token@git.example.invalid/cluster.git"
    old = os.umask(0o022)
    try:
        # An existing mirror from before, world-readable, gets tightened too.
        (tmp_path / "old" / "mirror.git").mkdir(parents=True)
        git(tmp_path / "old" / "mirror.git", "init", "-q", "--bare")
        os.chmod(tmp_path / "old" / "mirror.git" / "config", 0o644)
        for state in (tmp_path / "new" / "state", tmp_path / "old"):
            src = GitSource(url, "main", "", state)
            src.ensure_mirror()
            config = src.mirror / "config"
            assert "s3cr3t-token" in config.read_text()  # where git keeps it
            assert (src.mirror.stat().st_mode & 0o777) == 0o700
            assert (config.stat().st_mode & 0o777) == 0o600
        assert (tmp_path / "new" / "state").stat().st_mode & 0o077 == 0, "a state dir we create is private"
        src = GitSource(str(repo.path), "main", "", tmp_path / "new" / "state")
        assert src.fetch() == repo.head()  # pointed back at a reachable URL, it still works
        assert (src.mirror / "config").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
