"""The daemon loop's contract with systemd: a pass that keeps crashing stops feeding the watchdog."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops.config import Config
from gitops.daemon import MAX_CRASHES, Daemon
from gitops.reconcile.reconciler import PassFailed


class Failing:
    """Stands in for the reconciler: every pass raises ``error``."""

    def __init__(self, error: Exception):
        self.error = error
        self.pass_error: str | None = None

    def run_pass(self) -> Any:
        raise self.error


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A NOTIFY_SOCKET as systemd provides one; the test reads what the daemon sent."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        s.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield s


def sent(s: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(100).decode())
        except BlockingIOError:
            return out


def test_repeated_crashes_stop_feeding_the_watchdog(notify: socket.socket, tmp_path: Path) -> None:
    rec = Failing(KeyError("bug"))
    d = Daemon(Config(repo="x", state_dir=tmp_path), rec)  # type: ignore[arg-type]
    fed = []
    for _ in range(MAX_CRASHES + 2):
        assert d.pass_once() is False
        fed.append(sent(notify).count("WATCHDOG=1"))
    assert fed == [1] * (MAX_CRASHES - 1) + [0, 0, 0]
    # Heartbeats carry the reason meanwhile.
    assert rec.pass_error == "KeyError: 'bug'"


def test_outages_keep_feeding_the_watchdog(notify: socket.socket, tmp_path: Path) -> None:
    # An unreachable engine or Git server is not cured by a restart: keep the daemon, retry.
    rec = Failing(PassFailed("docker engine unreachable"))
    d = Daemon(Config(repo="x", state_dir=tmp_path), rec)  # type: ignore[arg-type]
    for _ in range(MAX_CRASHES + 2):
        d.pass_once()
        assert sent(notify) == ["WATCHDOG=1"]
    assert rec.pass_error == "docker engine unreachable"
