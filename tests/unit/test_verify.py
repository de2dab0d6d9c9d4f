"""Commit verification against real repositories and real keys made here (SSH and OpenPGP)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitops.config import Config, ConfigError, VerifyConfig, load_config
from gitops.desired import DesiredLoader
from gitops.manifests.scopes import CLUSTER_SCOPE
from gitops.source import GitSource
from gitops.verify import VERIFIED_REF, Verifier
from tests.builders import deployment
from tests.helpers import Repo, SshKey, git, ssh_commit, ssh_key


@dataclass(frozen=True)
class GpgKey:
    """An OpenPGP key in its own GNUPGHOME; ``keyring`` holds its public key."""

    home: Path
    email: str
    keyring: Path


@pytest.fixture(scope="module")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GpgKey, GpgKey]]:
    """Two OpenPGP keys (trusted, stranger), made once for the module."""
    base = tmp_path_factory.mktemp("gpg")
    keys = []
    for name in ("trusted", "stranger"):
        home = base / name
        home.mkdir(mode=0o700)
        email = f"{name}@t"
        env = {**os.environ, "GNUPGHOME": str(home)}
        gen = ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"T <{email}>", "ed25519", "sign", "never"]
        subprocess.run(gen, env=env, check=True, capture_output=True)
        keyring = base / f"{name}.gpg"
        keyring.write_bytes(subprocess.run(["gpg", "--export"], env=env, check=True, capture_output=True).stdout)
        keys.append(GpgKey(home, email, keyring))
    yield keys[0], keys[1]
    for k in keys:  # the agents signing started
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(k.home)}, check=False)


def gpg_commit(repo: Repo, key: GpgKey, message: str) -> str:
    git(repo.path, "add", "-A")
    env = {**os.environ, "GNUPGHOME": str(key.home)}
    cmd = ["git", "-c", "gpg.program=gpg", "-c", f"user.signingkey={key.email}"]
    cmd += ["-c", "user.name=t", "-c", f"user.email={key.email}", "commit", "-q", "--allow-empty", "-S", "-m", message]
    subprocess.run(cmd, cwd=repo.path, env=env, check=True, capture_output=True)
    return repo.head()


@pytest.fixture
def alice(tmp_path: Path) -> SshKey:
    return ssh_key(tmp_path, "alice", "alice@example.com")


@pytest.fixture
def signers(tmp_path: Path, alice: SshKey) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text(alice.line)
    return path


def verifier(repo: Repo, state: Path, **settings: object) -> tuple[GitSource, Verifier]:
    src = GitSource(str(repo.path), "main", "", state)
    return src, Verifier(VerifyConfig.model_validate(settings), src, state)


def test_signed_commit_accepted_and_remembered(repo: Repo, tmp_path: Path, alice: SshKey, signers: Path) -> None:
    tip = ssh_commit(repo, alice, "signed")
    src, v = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers)
    verdict = v.check(src.fetch())
    assert verdict.ok, verdict.message(None)
    assert v.last_verified() == tip
    assert src.git("rev-parse", VERIFIED_REF).decode().strip() == tip


def test_unsigned_commit_refused_names_commit(repo: Repo, tmp_path: Path, alice: SshKey, signers: Path) -> None:
    good = ssh_commit(repo, alice, "signed")
    src, v = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers)
    assert v.check(src.fetch()).ok
    bad = repo.commit("unsigned")
    verdict = v.check(src.fetch())
    assert not verdict.ok
    assert [c.sha for c in verdict.refused] == [bad]
    message = verdict.message(v.last_verified())
    assert bad in message and "not signed" in message and "signer none" in message and good[:12] in message
    assert v.last_verified() == good


def test_signed_tip_on_unsigned_commit_refused_under_all_accepted_under_head(
    repo: Repo, tmp_path: Path, alice: SshKey, signers: Path
) -> None:
    ssh_commit(repo, alice, "signed base")
    all_src, all_v = verifier(repo, tmp_path / "all", mode="all", allowed_signers=signers)
    head_src, head_v = verifier(repo, tmp_path / "head", mode="head", allowed_signers=signers)
    assert all_v.check(all_src.fetch()).ok and head_v.check(head_src.fetch()).ok
    sneaked = repo.commit("unsigned, in the middle")
    tip = ssh_commit(repo, alice, "signed tip")
    refused = all_v.check(all_src.fetch())
    assert [c.sha for c in refused.refused] == [sneaked]
    assert head_v.check(head_src.fetch()).ok
    assert head_v.last_verified() == tip and all_v.last_verified() != tip


def test_unknown_ssh_key_refused(repo: Repo, tmp_path: Path, signers: Path) -> None:
    mallory = ssh_key(tmp_path, "mallory", "mallory@example.com")
    tip = ssh_commit(repo, mallory, "signed by a stranger")
    src, v = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers)
    verdict = v.check(src.fetch())
    assert [(c.sha, c.code, c.signer) for c in verdict.refused] == [(tip, "U", "")]
    assert verdict.refused[0].key.startswith("SHA256:") and v.last_verified() is None
    assert "not trusted" in verdict.message(None) and "no verified revision" in verdict.message(None)


def test_restart_keeps_last_verified_and_all_checks_from_it(
    repo: Repo, tmp_path: Path, alice: SshKey, signers: Path
) -> None:
    good = ssh_commit(repo, alice, "signed")
    src, v = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers)
    assert v.check(src.fetch()).ok
    sneaked = repo.commit("unsigned")
    ssh_commit(repo, alice, "signed tip")
    # A new process on the same state directory: the verified ref survives, so the unsigned
    # commit under the signed tip is still caught (first start would check the tip alone).
    src2, v2 = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers)
    assert v2.last_verified() == good
    assert [c.sha for c in v2.check(src2.fetch()).refused] == [sneaked]


def test_key_added_to_allowed_signers_takes_effect(repo: Repo, tmp_path: Path, alice: SshKey, signers: Path) -> None:
    bob = ssh_key(tmp_path, "bob", "bob@example.com")
    tip = ssh_commit(repo, bob, "by bob")
    src, v = verifier(repo, tmp_path / "state", mode="head", allowed_signers=signers)
    assert not v.check(src.fetch()).ok
    signers.write_text(alice.line + bob.line)
    os.utime(signers, ns=(1, 1))  # a different stamp even within the same clock tick
    verdict = v.check(src.fetch())
    assert verdict.ok and v.last_verified() == tip


def test_missing_allowed_signers_refuses(repo: Repo, tmp_path: Path, alice: SshKey) -> None:
    ssh_commit(repo, alice, "signed")
    src, v = verifier(repo, tmp_path / "state", mode="head", allowed_signers=tmp_path / "nope")
    verdict = v.check(src.fetch())
    assert not verdict.ok and "allowed_signers" in verdict.problem


def test_openpgp_accepted_and_refused(repo: Repo, tmp_path: Path, gpg_keys: tuple[GpgKey, GpgKey]) -> None:
    trusted, stranger = gpg_keys
    good = gpg_commit(repo, trusted, "signed by the trusted key")
    src, v = verifier(repo, tmp_path / "state", mode="all", gpg_keyring=trusted.keyring)
    verdict = v.check(src.fetch())
    assert verdict.ok, verdict.message(None)
    assert v.last_verified() == good
    bad = gpg_commit(repo, stranger, "signed by a key not in the keyring")
    verdict = v.check(src.fetch())
    assert [(c.sha, c.code) for c in verdict.refused] == [(bad, "E")]
    unsigned = repo.commit("unsigned")
    assert [c.sha for c in v.check(src.fetch()).refused] == [unsigned, bad]
    # The private GNUPGHOME lives under the state directory and holds only the keyring's key.
    assert v.gnupg_home.is_relative_to(tmp_path / "state")
    assert not list(v.gnupg_home.glob("S.gpg-agent*")), "checking signatures started a gpg-agent"


def test_openpgp_key_removed_from_keyring_no_longer_trusted(
    repo: Repo, tmp_path: Path, gpg_keys: tuple[GpgKey, GpgKey]
) -> None:
    trusted, _ = gpg_keys
    gpg_commit(repo, trusted, "signed")
    keyring = tmp_path / "trusted.gpg"
    keyring.write_bytes(trusted.keyring.read_bytes())
    src, v = verifier(repo, tmp_path / "state", mode="head", gpg_keyring=keyring)
    assert v.check(src.fetch()).ok
    keyring.write_bytes(b"")
    os.utime(keyring, ns=(1, 1))
    gpg_commit(repo, trusted, "signed again")
    assert [c.code for c in v.check(src.fetch()).refused] == ["E"]


def test_config_verify_block() -> None:
    assert Config().verify.mode == "off"
    cfg = Config.model_validate({"verify": {"mode": "all", "allowed_signers": "/etc/gitops/allowed_signers"}})
    assert cfg.verify.allowed_signers == Path("/etc/gitops/allowed_signers")
    with pytest.raises(ValueError, match="needs allowed_signers or gpg_keyring"):
        VerifyConfig(mode="head")
    with pytest.raises(ValueError):
        VerifyConfig.model_validate({"mode": "all", "allowed_signers": "/x", "keyring": "/y"})
    env = {"GITOPS_VERIFY": "{mode: head, gpg_keyring: /k.gpg}"}
    assert load_config(Path("/dev/null"), environ=env).verify.gpg_keyring == Path("/k.gpg")
    with pytest.raises(ConfigError):
        load_config(Path("/dev/null"), environ={"GITOPS_VERIFY": "{mode: sometimes}"})


def test_force_push_back_checks_the_older_tip_itself(repo: Repo, tmp_path: Path, alice: SshKey, signers: Path) -> None:
    unsigned = repo.commit("unsigned base")
    ssh_commit(repo, alice, "signed")
    src, v = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers)
    assert v.check(src.fetch()).ok  # first start: the tip alone
    git(repo.path, "reset", "-q", "--hard", unsigned)  # force-push back below the verified revision
    assert [c.sha for c in v.check(src.fetch()).refused] == [unsigned]


def in_ns(text: str, namespace: str) -> str:
    return text.replace("metadata:\n", f"metadata:\n  namespace: {namespace}\n", 1)


@pytest.fixture
def teams(tmp_path: Path, alice: SshKey, signers: Path) -> tuple[SshKey, dict[str, object]]:
    """Bob's key beside Alice's; settings where team-a is Alice's and team-b is Bob's."""
    bob = ssh_key(tmp_path, "bob", "bob@example.com")
    signers.write_text(alice.line + bob.line)
    namespaces = {"team-a": ["alice@example.com"], "team-b": ["bob@example.com"]}
    return bob, {"mode": "all", "allowed_signers": signers, "namespaces": namespaces}


def test_namespace_changed_by_another_team_is_held_until_its_team_signs(
    repo: Repo, tmp_path: Path, alice: SshKey, teams: tuple[SshKey, dict[str, object]]
) -> None:
    bob, settings = teams
    repo.write("a.yaml", in_ns(deployment("a"), "team-a"))
    repo.write("b.yaml", in_ns(deployment("b"), "team-b"))
    ssh_commit(repo, bob, "both teams")  # first start: the tip's own change; bob may not change team-a
    src, v = verifier(repo, tmp_path / "state", **settings)
    assert set(v.check(src.fetch()).held) == {"team-a"}
    repo.write("a.yaml", in_ns(deployment("a", 2), "team-a"))
    own = ssh_commit(repo, alice, "team-a scales")
    repo.write("b.yaml", in_ns(deployment("b", 5), "team-b"))
    sneaked = ssh_commit(repo, alice, "alice edits team-b")
    repo.write("a.yaml", in_ns(deployment("a", 3), "team-a"))
    tip = ssh_commit(repo, alice, "team-a again")
    verdict = v.check(src.fetch())
    assert verdict.ok and v.last_verified() == tip
    [(scope, hold)] = verdict.held.items()
    assert (scope, hold.revision, hold.commit, hold.signer) == ("team-b", own, sneaked, "alice@example.com")
    assert "may not change namespace team-b" in hold.why

    # A restart keeps the hold (refs in the mirror, reasons beside them).
    src2, v2 = verifier(repo, tmp_path / "state", **settings)
    assert v2.held() == verdict.held
    assert src2.git("rev-parse", "refs/gitops/held/ns/team-b").decode().strip() == own

    # Bob's own change to team-b moves it on.
    repo.write("b.yaml", in_ns(deployment("b", 4), "team-b"))
    ssh_commit(repo, bob, "team-b accepts")
    assert v2.check(src2.fetch()).held == {}
    assert not src2.git("for-each-ref", "refs/gitops/held/").strip()


def test_unsigned_commit_holds_only_what_it_changes_and_merges_count_their_own_change(
    repo: Repo, tmp_path: Path, alice: SshKey, teams: tuple[SshKey, dict[str, object]]
) -> None:
    bob, settings = teams
    repo.write("a.yaml", in_ns(deployment("a"), "team-a"))
    ssh_commit(repo, alice, "team-a")
    src, v = verifier(repo, tmp_path / "state", **settings)
    assert v.check(src.fetch()).held == {}
    repo.put("README.md", "docs\n", "unsigned, changes nothing that runs")
    git(repo.path, "checkout", "-q", "-b", "feature")
    repo.write("b.yaml", in_ns(deployment("b"), "team-b"))
    ssh_commit(repo, bob, "team-b on a branch")
    git(repo.path, "checkout", "-q", "main")
    repo.write("a.yaml", in_ns(deployment("a", 2), "team-a"))
    ssh_commit(repo, alice, "team-a on main")
    git(repo.path, "merge", "-q", "--no-ff", "--no-commit", "feature")
    merge = ssh_commit(repo, alice, "alice merges bob's branch")
    verdict = v.check(src.fetch())
    # The merge's own change (none) is Alice's; each side's commits were judged on their own.
    assert verdict.ok and verdict.held == {} and v.last_verified() == merge
    repo.put("b.yaml", in_ns(deployment("b", 2), "team-b"), "unsigned team-b change")
    assert set(v.check(src.fetch()).held) == {"team-b"}


def test_head_mode_judges_the_whole_range_by_the_tip_signer(
    repo: Repo, tmp_path: Path, alice: SshKey, teams: tuple[SshKey, dict[str, object]]
) -> None:
    bob, settings = teams
    repo.write("b.yaml", in_ns(deployment("b"), "team-b"))
    base = ssh_commit(repo, bob, "team-b")
    src, v = verifier(repo, tmp_path / "state", **{**settings, "mode": "head"})
    assert v.check(src.fetch()).held == {}
    repo.put("b.yaml", in_ns(deployment("b", 2), "team-b"), "unsigned team-b change")
    repo.write("a.yaml", in_ns(deployment("a"), "team-a"))
    ssh_commit(repo, alice, "alice's tip")
    verdict = v.check(src.fetch())
    assert set(verdict.held) == {"team-b"} and verdict.held["team-b"].revision == base


def test_more_commits_than_max_commits_refused_naming_the_limit(
    repo: Repo, tmp_path: Path, alice: SshKey, signers: Path
) -> None:
    first = ssh_commit(repo, alice, "signed")
    src, v = verifier(repo, tmp_path / "state", mode="all", allowed_signers=signers, max_commits=2)
    assert v.check(src.fetch()).ok
    for i in range(3):
        ssh_commit(repo, alice, f"signed {i}")
    verdict = v.check(src.fetch())
    assert not verdict.ok and v.last_verified() == first
    assert "more than 2 commits" in verdict.message(first) and "verify.max_commits" in verdict.message(first)


def test_namespaces_config_checked() -> None:
    with pytest.raises(ValueError, match="not a valid name"):
        VerifyConfig(mode="all", allowed_signers=Path("/x"), namespaces={"Team_A": ("a@x",)})
    with pytest.raises(ValueError, match=r"needs verify\.mode"):
        VerifyConfig(namespaces={"team-a": ("a@x",)})


def test_cluster_document_needs_a_signer_restricted_to_no_namespace(
    repo: Repo, tmp_path: Path, alice: SshKey, teams: tuple[SshKey, dict[str, object]]
) -> None:
    _, settings = teams
    ops = ssh_key(tmp_path, "ops", "ops@example.com")
    signers = Path(str(settings["allowed_signers"]))
    signers.write_text(signers.read_text() + ops.line)
    cluster = "apiVersion: gitops/v1\nkind: Cluster\nspec:\n  cordoned: []\n"
    repo.write("cluster.yaml", cluster)
    base = ssh_commit(repo, ops, "cluster by ops")
    src, v = verifier(repo, tmp_path / "state", **settings)
    assert v.check(src.fetch()).held == {}
    repo.write("cluster.yaml", cluster.replace("[]", "[node-1]"))
    ssh_commit(repo, alice, "alice cordons a node")
    held = v.check(src.fetch()).held
    assert set(held) == {CLUSTER_SCOPE} and held[CLUSTER_SCOPE].revision == base
    assert src.git("rev-parse", "refs/gitops/held/cluster").decode().strip() == base
    # The node keeps running the Cluster settings of the held revision.
    loader = DesiredLoader(src)
    assert loader.load(src.head()).cluster.cordoned == ("node-1",)
    assert loader.load(src.head(), {CLUSTER_SCOPE: base}).cluster.cordoned == ()
