"""The daemon loop: its contract with systemd (a pass that keeps crashing stops feeding the watchdog), and its pace."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
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


class Busy:
    """Stands in for the reconciler: each pass burns ``cpu_s`` of CPU and leaves ``backlog`` starts queued."""

    def __init__(self, cpu_s: float, backlog: int):
        self.cpu_s = cpu_s
        self.executor = SimpleNamespace(backlog=lambda: backlog)
        self.pass_error: str | None = None
        self.passes = 0

    def run_pass(self) -> Any:
        self.passes += 1
        end = time.thread_time() + self.cpu_s
        while time.thread_time() < end:
            pass
        return SimpleNamespace(plan=SimpleNamespace(actions=[]), revision="0" * 40, ok=True)

    def next_wake_in(self) -> float:
        return 30.0


@pytest.mark.parametrize(("backlog", "most", "least"), [(0, None, 7), (12, 6, 2)])
def test_passes_rest_while_starts_queue_however_often_something_wakes_them(
    tmp_path: Path, backlog: int, most: int | None, least: int
) -> None:
    # Readiness flips wake the loop all the time while a thousand containers start; with starts
    # queued, each pass must leave the engine five times its own CPU before the next.
    rec = Busy(0.05, backlog)
    d = Daemon(Config(repo="x", state_dir=tmp_path), rec)  # type: ignore[arg-type]
    loop = threading.Thread(target=d._loop)
    loop.start()
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        d.wake.set()
        time.sleep(0.01)
    d.stop()
    d.wake.set()
    loop.join(5)
    assert not loop.is_alive()
    # A cycle is a 0.05 s pass then, queued, a 0.25 s rest: about four in 1.2 s instead of about twenty.
    assert rec.passes >= least and (most is None or rec.passes <= most), rec.passes
