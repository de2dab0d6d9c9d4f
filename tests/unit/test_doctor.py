"""``gitops doctor``'s checks that need no engine: clock skew against peers' records, keys, private files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitops.cluster import ClusterView
from gitops.config import Config, StatusSigningConfig, VerifyConfig, WebhookConfig
from gitops.doctor import Check, _clock, _keys, _secrets_dir
from gitops.model import ClusterSpec
from gitops.status import NodeStatus, utc_now_iso
from tests.helpers import ssh_key


def clock_with(**ages: float) -> Check:
    """The clock check against peers whose newest heartbeats are ``age`` seconds old (negative: in the future)."""
    now = datetime.now(UTC)
    reports = {n: NodeStatus(node=n, heartbeat=utc_now_iso(now - timedelta(seconds=a))) for n, a in ages.items()}
    view = ClusterView(reports=reports, live=frozenset(reports))
    return _clock(Config(node="me"), lambda _: (ClusterSpec(), view))


def test_clock_skew_against_the_newest_peer_heartbeat() -> None:
    assert clock_with(a=4.0, b=30.0).level == "OK"
    assert clock_with().level == "OK"
    # Our own record says nothing about our clock.
    assert clock_with(me=-500.0, a=2.0).level == "OK"
    warn = clock_with(a=-5.0, b=3.0)
    assert warn.level == "WARN" and "s behind a's newest heartbeat: keep time synchronised" in warn.message
    assert clock_with(a=-120.0).level == "FAIL"
    stale = clock_with(a=300.0)
    assert stale.level == "WARN" and "peers are down or this clock runs ahead" in stale.message


def signing(tmp_path: Path, node: str = "n1", principal: str = "n1") -> tuple[Path, Path]:
    key = ssh_key(tmp_path, "node", principal)
    signers = tmp_path / "node_signers"
    signers.write_text("# every node's key\n" + key.line)
    return key.private, signers


def key_checks(cfg: Config) -> dict[str, Check]:
    return {c.name: c for c in _keys(cfg)}


def test_good_keys_pass(tmp_path: Path) -> None:
    key, signers = signing(tmp_path)
    secret = tmp_path / "hook"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    cfg = Config(
        node="n1",
        verify=VerifyConfig(mode="head", allowed_signers=signers),
        status_signing=StatusSigningConfig(key=key, allowed_signers=signers),
        webhook=WebhookConfig(address=":9443", secret_file=secret),
    )
    checks = key_checks(cfg)
    assert set(checks) == {
        "verify.allowed_signers",
        "status_signing.allowed_signers",
        "status_signing.key",
        "webhook.secret_file",
    }
    assert all(c.level == "OK" for c in checks.values()), checks


def test_a_key_peers_would_not_accept_fails_saying_what_to_add(tmp_path: Path) -> None:
    key, signers = signing(tmp_path, principal="someone-else")
    check = key_checks(Config(node="n1", status_signing=StatusSigningConfig(key=key, allowed_signers=signers)))[
        "status_signing.key"
    ]
    assert check.level == "FAIL" and 'add \'n1 namespaces="git" ssh-ed25519 ' in check.message


def test_unreadable_or_unparseable_keys_fail_with_the_file(tmp_path: Path) -> None:
    key, signers = signing(tmp_path)
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    bad_line = tmp_path / "bad_signers"
    bad_line.write_text(signers.read_text() + "n2 ssh-ed25519 !!!notbase64\n")
    cases = {
        "status_signing.key": StatusSigningConfig(key=garbage, allowed_signers=signers),
        "status_signing.allowed_signers": StatusSigningConfig(key=key, allowed_signers=tmp_path / "missing"),
    }
    for name, settings in cases.items():
        check = key_checks(Config(node="n1", status_signing=settings))[name]
        assert check.level == "FAIL", check
    check = key_checks(Config(verify=VerifyConfig(mode="head", allowed_signers=bad_line)))["verify.allowed_signers"]
    assert (check.level, "line 3" in check.message) == ("FAIL", True), check
    check = key_checks(Config(verify=VerifyConfig(mode="head", gpg_keyring=garbage)))["verify.gpg_keyring"]
    assert check.level == "FAIL" and "no OpenPGP public key" in check.message
    missing = key_checks(Config(verify=VerifyConfig(mode="head", allowed_signers=tmp_path / "nope")))
    assert f"{tmp_path / 'nope'}: No such file or directory" in missing["verify.allowed_signers"].message


@pytest.mark.parametrize(("mode", "level"), [(0o700, "OK"), (0o755, "WARN")])
def test_secrets_dir_open_to_others_warns(tmp_path: Path, mode: int, level: str) -> None:
    path = tmp_path / "secrets"
    path.mkdir(mode=mode)
    path.chmod(mode)
    assert _secrets_dir(path).level == level


def test_an_empty_webhook_secret_fails(tmp_path: Path) -> None:
    secret = tmp_path / "hook"
    secret.write_text("\n")
    check = key_checks(Config(webhook=WebhookConfig(address=":1", secret_file=secret)))["webhook.secret_file"]
    assert check.level == "FAIL" and "is empty" in check.message
