"""Status signing against real repositories and real SSH keys: who may write a node's status record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gitops.cluster import StatusBoard
from gitops.config import Config, ConfigError, StatusSigningConfig, load_config
from gitops.source import GitSource
from gitops.status import NodeStatus, commit_message, dump, utc_now_iso
from gitops.verify import StatusSignatures
from tests.helpers import Repo, SshKey, git, ssh_key


@pytest.fixture
def origin(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "origin")
    repo.put("apps/x.yaml", "{}\n")
    return repo


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, SshKey]:
    """Keys of nodes a and b (in node_signers) and of a stranger (not in it)."""
    d = tmp_path / "keys"
    d.mkdir()
    return {name: ssh_key(d, name, name) for name in ("a", "b", "stranger")}


@pytest.fixture
def signers(tmp_path: Path, keys: dict[str, SshKey]) -> Path:
    path = tmp_path / "node_signers"
    path.write_text(keys["a"].line + keys["b"].line)
    return path


def writer(origin: Repo, tmp_path: Path, key: SshKey | None, name: str) -> GitSource:
    """A node's mirror that pushes status commits, signed with ``key`` (None: unsigned)."""
    src = GitSource(str(origin.path), "main", "", tmp_path / f"writer-{name}", status_key=key.private if key else None)
    src.fetch()
    return src


def push(src: GitSource, node: str, **fields: Any) -> str:
    status = NodeStatus(node=node, heartbeat=utc_now_iso(), **fields)
    return src.push_status(node, dump(status), commit_message(status), 50)


def reader(origin: Repo, tmp_path: Path) -> GitSource:
    src = GitSource(str(origin.path), "main", "", tmp_path / "reader")
    src.fetch()
    return src


def look(board: StatusBoard, src: GitSource, signers: Path) -> Any:
    src.fetch()
    verify = StatusSignatures(signers, src)
    return board.view(src.status_heads(), src.read_status_files, 30, 36, verify=verify)


def test_config_takes_status_signing_and_forbids_unknown_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("status_signing:\n  key: /etc/gitops/node_ed25519\n  allowed_signers: /etc/gitops/node_signers\n")
    got = load_config(cfg, environ={}).status_signing
    assert got == StatusSigningConfig(
        key=Path("/etc/gitops/node_ed25519"), allowed_signers=Path("/etc/gitops/node_signers")
    )
    assert Config().status_signing is None
    cfg.write_text("status_signing:\n  key: /k\n  allowed_signers: /s\n  mode: all\n")
    with pytest.raises(ConfigError, match="mode"):
        load_config(cfg, environ={})
    env = {"GITOPS_STATUS_SIGNING": "{key: /k, allowed_signers: /s}"}
    assert load_config(environ={**env, "GITOPS_CONFIG": str(tmp_path / "none.yaml")}).status_signing == (
        StatusSigningConfig(key=Path("/k"), allowed_signers=Path("/s"))
    )


def test_a_record_signed_by_its_node_verifies(
    origin: Repo, tmp_path: Path, keys: dict[str, SshKey], signers: Path
) -> None:
    sha = push(writer(origin, tmp_path, keys["a"], "a"), "a", labels={"zone": "z1"})
    # commit-tree -S with gpg.format=ssh made an SSH-signed commit.
    assert "-----BEGIN SSH SIGNATURE-----" in git(origin.path, "cat-file", "commit", sha)
    src = reader(origin, tmp_path)
    assert StatusSignatures(signers, src)({"a": sha}) == {"a": None}
    view = look(StatusBoard(), src, signers)
    assert view.rejected == {} and view.reports["a"].labels == {"zone": "z1"} and view.live == {"a"}


@pytest.mark.parametrize(
    ("signed_by", "why"),
    [
        (None, "not signed"),
        ("b", "signed by b, key SHA256:"),
        ("stranger", "signed by a key not trusted here, key SHA256:"),
    ],
)
def test_a_record_not_signed_by_its_node_is_rejected(
    origin: Repo, tmp_path: Path, keys: dict[str, SshKey], signers: Path, signed_by: str | None, why: str
) -> None:
    sha = push(writer(origin, tmp_path, keys[signed_by] if signed_by else None, "forger"), "a")
    src = reader(origin, tmp_path)
    reason = StatusSignatures(signers, src)({"a": sha})["a"]
    assert reason is not None and reason.startswith(f"status commit not signed by node a: {why}")
    view = look(StatusBoard(), src, signers)
    assert view.rejected == {"a": reason} and "a" not in view.reports and view.live == frozenset()


def test_a_forged_record_is_rejected_and_the_last_good_one_kept(
    origin: Repo, tmp_path: Path, keys: dict[str, SshKey], signers: Path, caplog: pytest.LogCaptureFixture
) -> None:
    push(writer(origin, tmp_path, keys["a"], "a"), "a", labels={"zone": "good"})
    src, board = reader(origin, tmp_path), StatusBoard()
    assert look(board, src, signers).reports["a"].labels == {"zone": "good"}
    forged = push(writer(origin, tmp_path, keys["b"], "b"), "a", labels={"zone": "forged"})
    with caplog.at_level(logging.WARNING, logger="gitops.cluster"):
        views = [look(board, src, signers) for _ in range(3)]
    for view in views:
        assert view.rejected["a"].startswith("status commit not signed by node a: signed by b")
        assert view.reports["a"].labels == {"zone": "good"}
    # Logged once for the forged commit, not once per pass.
    assert [r.getMessage()[:33] for r in caplog.records] == [f"status of a at {forged[:12]} rejected"[:33]]


def test_verification_is_one_git_call_for_all_new_heads(
    origin: Repo, tmp_path: Path, signers: Path, keys: dict[str, SshKey]
) -> None:
    d = tmp_path / "more"
    d.mkdir()
    names = [f"n{i}" for i in range(6)]
    more = {n: ssh_key(d, n, n) for n in names}
    signers.write_text(signers.read_text() + "".join(k.line for k in more.values()))
    for n in names:
        push(writer(origin, tmp_path, more[n], n), n)
    push(writer(origin, tmp_path, keys["b"], "forger"), "a")  # one forged head among them
    src, board = reader(origin, tmp_path), StatusBoard()
    src.fetch()
    calls: list[tuple[str, ...]] = []
    real = src.git

    def counting(*args: str, **kw: Any) -> bytes:
        calls.append(args)
        return real(*args, **kw)

    src.git = counting  # type: ignore[method-assign]
    heads = src.status_heads()
    calls.clear()
    view = board.view(heads, src.read_status_files, 30, 36, verify=StatusSignatures(signers, src))
    assert view.live == set(names) and set(view.rejected) == {"a"}
    assert [c[0] for c in calls].count("log") == 1, calls
    # A later pass with no new heads checks nothing again.
    calls.clear()
    board.view(heads, src.read_status_files, 30, 36, verify=StatusSignatures(signers, src))
    assert calls == []


def test_own_remembered_record_is_trusted_without_a_check(origin: Repo, tmp_path: Path, signers: Path) -> None:
    sha = push(writer(origin, tmp_path, None, "a"), "a")  # unsigned: it would fail a check
    src, board = reader(origin, tmp_path), StatusBoard()
    board.remember("a", sha, NodeStatus(node="a", heartbeat=utc_now_iso()))
    checked: list[dict[str, str]] = []

    def verify(heads: dict[str, str]) -> dict[str, str | None]:
        checked.append(heads)
        return StatusSignatures(signers, src)(heads)

    view = board.view(src.status_heads(), src.read_status_files, 30, 36, verify=verify)
    assert view.rejected == {} and "a" in view.reports and checked == []


def test_unreadable_signers_file_is_contained_and_checked_again(
    origin: Repo, tmp_path: Path, keys: dict[str, SshKey], signers: Path
) -> None:
    push(writer(origin, tmp_path, keys["a"], "a"), "a")
    src, board = reader(origin, tmp_path), StatusBoard()
    missing = tmp_path / "nope"
    view = look(board, src, missing)
    assert view.rejected["a"].startswith("status branch unreadable: status_signing.allowed_signers")
    assert "a" not in view.reports
    # Not a verdict on the commit: once the file is there, the same commit is checked again.
    view = look(board, src, signers)
    assert view.rejected == {} and "a" in view.reports
