"""Probe semantics without Docker: the pure scheduling core, the network handlers, and the Prober on a fake runtime."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gitops.health import (
    MESSAGE_MAX,
    UNWATCHED,
    ContainerProbes,
    Health,
    Kind,
    Prober,
    ProbeState,
    ProbeTarget,
    container_ip,
    http_get,
    initial_state,
    probe_state_after,
    tcp_connect,
)
from gitops.model import Probe
from gitops.runtime.base import RuntimeUnavailable
from tests.helpers import wait_for


def exec_probe(**kw: Any) -> Probe:
    return Probe(handler="exec", command=("true",), **kw)


def tick(cp: ContainerProbes, now: float, results: dict[Kind, bool]) -> list[Kind]:
    """Run whatever is due at ``now``, each finishing at once with its result from ``results`` (default: pass)."""
    ran = []
    for kind, attempt, _ in cp.due(now):
        cp.finish(kind, attempt, results.get(kind, True), f"{kind} said no", now)
        ran.append(kind)
    return ran


# --- the threshold state machine ---------------------------------------------------------------------------------


def test_initial_verdicts() -> None:
    assert initial_state("liveness").ok
    assert not initial_state("readiness").ok
    assert not initial_state("startup").ok


def test_failure_threshold_needs_failures_in_a_row() -> None:
    probe = exec_probe(failure_threshold=3)
    s = initial_state("liveness")
    for success in (False, False, True, False, False):
        s = probe_state_after(s, probe, success, "boom")
    assert s.ok and s.failures == 2
    s = probe_state_after(s, probe, False, "boom")
    assert not s.ok and s.failures == 3 and s.message == "boom"


def test_success_threshold_above_one() -> None:
    probe = exec_probe(success_threshold=3, failure_threshold=2)
    s = initial_state("readiness")
    for success in (True, True, False, True, True):
        s = probe_state_after(s, probe, success)
    assert not s.ok and s.successes == 2
    s = probe_state_after(s, probe, True)
    assert s == ProbeState(ok=True, successes=3)
    # Once ready, a single failure below the threshold keeps it ready; the threshold takes it away.
    s = probe_state_after(s, probe, False, "x")
    assert s.ok
    s = probe_state_after(s, probe, False, "x")
    assert not s.ok
    # And back only after successThreshold successes again.
    s = probe_state_after(probe_state_after(s, probe, True), probe, True)
    assert not s.ok


def test_failure_message_is_one_clipped_line_keeping_the_tail() -> None:
    s = probe_state_after(initial_state("readiness"), exec_probe(), False, "start\n" + "x" * 1000 + "\nEND")
    assert len(s.message) <= MESSAGE_MAX and s.message.endswith("x END") and "\n" not in s.message


# --- scheduling: initial delay, period, startup gating, timeouts ------------------------------------------------


def test_initial_delay_counts_from_started_at() -> None:
    cp = ContainerProbes(ProbeTarget(None, exec_probe(initial_delay_s=5, period_s=2), None, started_at=100.0))
    assert cp.next_event() == 105.0
    assert tick(cp, 104.9, {}) == []
    assert tick(cp, 105.0, {}) == ["readiness"]
    assert tick(cp, 106.0, {}) == []
    assert cp.next_event() == 107.0
    assert tick(cp, 107.0, {}) == ["readiness"]


def test_no_probes_is_ready_and_live_at_once() -> None:
    cp = ContainerProbes(ProbeTarget(None, None, None, started_at=0.0))
    assert cp.health() == Health(ready=True, live=True, started=True)
    assert cp.next_event() is None and cp.due(1e9) == []


def test_readiness_needs_success_threshold_passes() -> None:
    cp = ContainerProbes(ProbeTarget(None, exec_probe(period_s=1, success_threshold=2), None, started_at=0.0))
    assert not cp.health().ready
    tick(cp, 0.0, {})
    assert not cp.health().ready
    tick(cp, 1.0, {})
    assert cp.health().ready


def test_startup_gates_liveness_and_readiness() -> None:
    target = ProbeTarget(
        liveness=exec_probe(period_s=1),
        readiness=exec_probe(period_s=1, initial_delay_s=3),
        startup=exec_probe(period_s=2, failure_threshold=10),
        started_at=0.0,
    )
    cp = ContainerProbes(target)
    assert cp.health() == Health(ready=False, live=True, started=False)
    assert tick(cp, 0.0, {"startup": False}) == ["startup"]
    assert tick(cp, 2.0, {"startup": False}) == ["startup"]
    h = cp.health()
    assert not h.started and not h.ready and h.live and h.message == "startup probe: startup said no"
    # Startup passes at t=4: liveness and readiness (whose delay of 3 s is behind) run on the next tick.
    assert tick(cp, 4.0, {}) == ["startup"]
    assert cp.health().started and not cp.health().ready and cp.health().message == ""
    assert sorted(tick(cp, 4.0, {})) == ["liveness", "readiness"]
    assert cp.health() == Health(ready=True, live=True, started=True)
    # The startup probe never runs again.
    assert sorted(tick(cp, 100.0, {})) == ["liveness", "readiness"]


def test_readiness_delay_still_applies_after_a_quick_startup() -> None:
    target = ProbeTarget(None, exec_probe(initial_delay_s=10), exec_probe(), started_at=0.0)
    cp = ContainerProbes(target)
    assert tick(cp, 0.0, {}) == ["startup"]
    assert cp.health().started and not cp.health().ready
    assert tick(cp, 5.0, {}) == []
    assert tick(cp, 10.0, {}) == ["readiness"]
    assert cp.health().ready


def test_startup_failing_its_threshold_means_restart() -> None:
    target = ProbeTarget(exec_probe(), exec_probe(), exec_probe(period_s=1, failure_threshold=2), started_at=0.0)
    cp = ContainerProbes(target)
    tick(cp, 0.0, {"startup": False})
    assert cp.health().live
    tick(cp, 1.0, {"startup": False})
    h = cp.health()
    assert not h.live and not h.started and not h.ready
    assert cp.next_event() is None and tick(cp, 50.0, {}) == []


def test_no_readiness_probe_is_ready_once_started() -> None:
    cp = ContainerProbes(ProbeTarget(exec_probe(), None, exec_probe(period_s=1), started_at=0.0))
    tick(cp, 0.0, {"startup": False})
    assert not cp.health().ready
    tick(cp, 1.0, {})
    assert cp.health().ready


def test_liveness_and_readiness_are_independent() -> None:
    target = ProbeTarget(exec_probe(period_s=1, failure_threshold=2), exec_probe(period_s=1), None, started_at=0.0)
    cp = ContainerProbes(target)
    tick(cp, 0.0, {"liveness": False})
    assert cp.health().ready and cp.health().live
    tick(cp, 1.0, {"liveness": False})
    h = cp.health()
    assert h.ready and not h.live and h.message == "liveness probe: liveness said no"
    # A failed liveness is final (the reconciler restarts); readiness keeps being probed.
    assert tick(cp, 2.0, {"liveness": True, "readiness": False}) == ["readiness"]
    h = cp.health()
    assert not h.live and h.ready and h.consecutive_failures == 1
    tick(cp, 3.0, {"readiness": False})
    tick(cp, 4.0, {"readiness": False})
    assert not cp.health().ready and cp.health().consecutive_failures == 3


def test_timeout_counts_a_failure_and_late_results_are_ignored() -> None:
    cp = ContainerProbes(ProbeTarget(exec_probe(period_s=2, timeout_s=1, failure_threshold=3), None, None, 0.0))
    [(kind, attempt, _)] = cp.due(0.0)
    assert cp.next_event() == pytest.approx(1.5)  # the deadline: timeout plus a little grace
    assert cp.due(1.0) == []
    assert cp.due(1.6) == []
    assert cp.health().message == "liveness probe: timed out after 1s"
    assert cp.next_event() == pytest.approx(3.6)  # a full period after the timeout
    # Still stuck then: counted again, but no second worker is started.
    assert cp.due(3.6) == []
    assert cp.health().live
    cp.finish(kind, attempt, True, "", 4.0)  # the late success does not count
    assert cp.health().message.startswith("liveness probe: previous probe still running")
    [(kind, attempt, _)] = cp.due(5.6)
    cp.finish(kind, attempt, False, "slow", 8.0)  # arrived after its deadline: a timeout, not "slow"
    assert not cp.health().live and cp.health().message == "liveness probe: timed out after 1s"


def test_an_attempt_within_its_timeout_delays_the_next_one() -> None:
    cp = ContainerProbes(ProbeTarget(None, exec_probe(period_s=1, timeout_s=3), None, 0.0))
    [(kind, attempt, _)] = cp.due(0.0)
    assert cp.due(1.0) == [] and cp.due(2.0) == []
    assert cp.health().consecutive_failures == 0
    cp.finish(kind, attempt, True, "", 2.5)
    assert cp.next_event() == 1.0 and [k for k, _, _ in cp.due(2.5)] == ["readiness"]


def test_result_that_could_not_be_had_counts_neither_way() -> None:
    cp = ContainerProbes(ProbeTarget(exec_probe(period_s=1, failure_threshold=1), None, None, 0.0))
    [(kind, attempt, _)] = cp.due(0.0)
    cp.finish(kind, attempt, None, "engine down", 0.1)
    assert cp.health() == Health(ready=True, live=True, started=True)
    assert cp.due(1.0) != []


# --- addresses and the network handlers --------------------------------------------------------------------------


def test_container_ip_prefers_the_default_bridge_then_the_first_network() -> None:
    assert container_ip({"IPAddress": "172.17.0.5", "Networks": {"n": {"IPAddress": "10.0.0.2"}}}) == "172.17.0.5"
    assert container_ip({"IPAddress": "", "Networks": {"a": {"IPAddress": ""}, "b": {"IPAddress": "10.0.0.2"}}}) == (
        "10.0.0.2"
    )
    assert container_ip({"IPAddress": "", "Networks": None}) == ""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.invalid/")
        elif self.path == "/header":
            self.send_response(200 if self.headers.get("X-Probe") == "yes" else 418)
        else:
            self.send_response(200 if self.path == "/ok" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def https_port(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server with a throwaway self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    make = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=probe.invalid"]
    subprocess.run([*make, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_get_statuses(http_port: int) -> None:
    def get(path: str, **kw: Any) -> tuple[bool | None, str]:
        o = http_get("127.0.0.1", Probe(handler="httpGet", port=http_port, path=path, **kw))
        return o.success, o.message

    assert get("/ok") == (True, "")
    assert get("/moved") == (True, "")  # 3xx is success, and the off-host redirect is not followed
    assert get("/header", headers=(("X-Probe", "yes"),)) == (True, "")
    assert get("/nope") == (False, f"GET http://127.0.0.1:{http_port}/nope: HTTP status 503")


def test_https_get_skips_certificate_verification(https_port: int) -> None:
    assert http_get("127.0.0.1", Probe(handler="httpGet", scheme="HTTPS", port=https_port, path="/ok")).success


def test_http_get_connection_error_message() -> None:
    port = closed_port()
    o = http_get("127.0.0.1", Probe(handler="httpGet", port=port, path="/x"))
    assert o.success is False
    assert o.message.startswith(f"GET http://127.0.0.1:{port}/x: ") and "refused" in o.message.lower()


def test_tcp_connect(http_port: int) -> None:
    assert tcp_connect("127.0.0.1", Probe(handler="tcpSocket", port=http_port)).success is True
    port = closed_port()
    o = tcp_connect("127.0.0.1", Probe(handler="tcpSocket", port=port))
    assert o.success is False and o.message.startswith(f"tcp 127.0.0.1:{port}: ")


# --- the Prober's threads, on a fake runtime ---------------------------------------------------------------------


class FakeRuntime:
    """Answers exec from a table and inspect from canned documents; records the calls."""

    def __init__(self) -> None:
        self.exec_results: dict[str, tuple[int, str]] = {}
        self.exec_delay = 0.0
        self.inspected: list[str] = []
        self.docs: dict[str, dict[str, Any]] = {}

    def exec(self, cid: str, cmd: list[str]) -> tuple[int, str]:
        time.sleep(self.exec_delay)
        result = self.exec_results.get(cid)
        if result is None:
            raise RuntimeUnavailable("engine down")
        return result

    def inspect(self, cid: str) -> dict[str, Any]:
        self.inspected.append(cid)
        return self.docs[cid]


eventually = partial(wait_for, timeout=5.0, interval=0.02)


@pytest.fixture
def prober_and_changes() -> Iterator[tuple[Prober, FakeRuntime, list[float]]]:
    runtime = FakeRuntime()
    changes: list[float] = []
    prober = Prober(runtime, lambda: changes.append(time.monotonic()), output=lambda text: text.replace("pw", "***"))
    prober.start()
    yield prober, runtime, changes
    prober.stop()


def test_exec_output_stays_out_of_messages_unless_a_filter_lets_it_in() -> None:
    runtime = FakeRuntime()
    runtime.exec_results["c1"] = (2, "password=pw1")
    plain, filtered = (
        Prober(runtime, lambda: None),
        Prober(runtime, lambda: None, output=lambda t: t.replace("pw1", "***")),
    )
    probe = exec_probe(period_s=1, failure_threshold=1)
    for p in (plain, filtered):
        p.start()
        p.sync({"c1": ProbeTarget(None, probe, None, started_at=time.monotonic())})
    try:
        wait_for(lambda: plain.result("c1").message and filtered.result("c1").message)
        assert plain.result("c1").message == "readiness probe: exit code 2"
        assert filtered.result("c1").message == "readiness probe: exit code 2: password=***"
    finally:
        plain.stop()
        filtered.stop()


def test_prober_flips_and_calls_on_change(prober_and_changes: tuple[Prober, FakeRuntime, list[float]]) -> None:
    prober, runtime, changes = prober_and_changes
    runtime.exec_results["c1"] = (1, "not yet")
    now = time.monotonic()
    targets = {
        "c1": ProbeTarget(None, exec_probe(period_s=1, failure_threshold=1), None, started_at=now),
        "plain": ProbeTarget(None, None, None, started_at=now),
    }
    prober.sync(targets)
    assert prober.result("plain") == Health(ready=True, live=True, started=True)
    assert prober.result("nobody") == UNWATCHED
    eventually(lambda: prober.result("c1").message == "readiness probe: exit code 1: not yet")
    assert not prober.result("c1").ready and changes == []
    # Re-syncing the same targets every pass keeps the state.
    prober.sync(targets)
    assert prober.result("c1").consecutive_failures >= 1
    runtime.exec_results["c1"] = (0, "")
    eventually(lambda: prober.result("c1").ready, timeout=3)
    eventually(lambda: len(changes) == 1)
    prober.sync({"plain": targets["plain"]})
    assert prober.result("c1") == UNWATCHED


def test_prober_times_out_a_slow_exec_without_blocking_others(
    prober_and_changes: tuple[Prober, FakeRuntime, list[float]],
) -> None:
    prober, runtime, _ = prober_and_changes
    runtime.exec_delay = 4.0
    runtime.exec_results["slow"] = (0, "")
    runtime.docs["fast"] = {"HostConfig": {"NetworkMode": "host"}, "NetworkSettings": {}}
    now = time.monotonic()
    prober.sync(
        {
            "slow": ProbeTarget(exec_probe(period_s=1, timeout_s=1, failure_threshold=2), None, None, now),
            "fast": ProbeTarget(None, Probe(handler="tcpSocket", port=closed_port(), period_s=1), None, now),
        }
    )
    eventually(lambda: not prober.result("slow").live, timeout=4)
    assert prober.result("slow").message.startswith("liveness probe: ")
    # The other container was probed meanwhile, at the host network's loopback address, inspected once.
    assert prober.result("fast").consecutive_failures >= 2
    assert "127.0.0.1" in prober.result("fast").message and runtime.inspected == ["fast"]


def test_prober_follows_container_network_mode_and_reports_missing_ip(
    prober_and_changes: tuple[Prober, FakeRuntime, list[float]],
) -> None:
    prober, runtime, _ = prober_and_changes
    runtime.docs["owner"] = {"HostConfig": {"NetworkMode": "bridge"}, "NetworkSettings": {"IPAddress": "127.0.0.1"}}
    runtime.docs["joined"] = {"HostConfig": {"NetworkMode": "container:owner"}, "NetworkSettings": {}}
    runtime.docs["none"] = {"HostConfig": {"NetworkMode": "none"}, "NetworkSettings": {"Networks": {}}}
    port = closed_port()
    now = time.monotonic()
    probe = Probe(handler="tcpSocket", port=port, period_s=1)
    prober.sync({"joined": ProbeTarget(None, probe, None, now), "none": ProbeTarget(None, probe, None, now)})
    eventually(lambda: prober.result("joined").consecutive_failures and prober.result("none").consecutive_failures)
    assert prober.result("joined").message.startswith(f"readiness probe: tcp 127.0.0.1:{port}: ")
    none = prober.result("none").message
    assert none.startswith("readiness probe: no IP address for container none") and "network mode none" in none
