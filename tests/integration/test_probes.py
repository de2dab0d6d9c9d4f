"""The Prober against the real engine: busybox httpd for httpGet/tcpSocket, docker exec for exec probes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import docker
import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gitops.health import Health, Prober, ProbeTarget
from gitops.model import Probe
from gitops.runtime.docker import DockerRuntime
from tests.builders import SERVE, TEST_IMAGE
from tests.helpers import DOCKER_HOST, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

LABELS = {"gitops.test": "probes"}
HTTPD = ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=DOCKER_HOST)
    yield c
    for leftover in c.containers.list(all=True, filters={"label": "gitops.test=probes"}):
        leftover.remove(force=True)
    c.close()


@contextmanager
def started(client: docker.DockerClient, command: list[str], **kw: Any) -> Iterator[str]:
    """A labelled test container running ``command``; its id, force-removed afterwards."""
    container = client.containers.run(TEST_IMAGE, command, detach=True, labels=LABELS, **kw)
    try:
        yield container.id
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def web(client: docker.DockerClient) -> Iterator[str]:
    """One httpd container serving / on 8080, shared by the network-probe tests."""
    with started(client, HTTPD) as cid:
        yield cid


@pytest.fixture
def idle(client: docker.DockerClient) -> Iterator[str]:
    """A container that only idles, for exec probes."""
    with started(client, SERVE) as cid:
        yield cid


class Watch:
    """A started Prober on the real engine, recording on_change calls."""

    def __init__(self) -> None:
        self.runtime = DockerRuntime(DOCKER_HOST)
        self.changes = 0
        # Output is let into messages here: these tests read what the probe printed.
        self.prober = Prober(self.runtime, self._changed, output=str)

    def _changed(self) -> None:
        self.changes += 1

    def one(self, cid: str, readiness: Probe | None = None, liveness: Probe | None = None) -> Callable[[], Health]:
        """Watch one container from now on; return a reader of its health."""
        self.prober.sync({cid: ProbeTarget(liveness, readiness, None, started_at=time.monotonic())})
        return lambda: self.prober.result(cid)


@pytest.fixture
def watch() -> Iterator[Watch]:
    w = Watch()
    w.prober.start()
    yield w
    w.prober.stop()
    w.runtime.close()


eventually = partial(wait_for, timeout=3.0, interval=0.05)


def http(path: str = "/", port: int = 8080) -> Probe:
    return Probe(handler="httpGet", path=path, port=port, period_s=1, timeout_s=1, failure_threshold=1)


def tcp(port: int) -> Probe:
    return Probe(handler="tcpSocket", port=port, period_s=1, timeout_s=1, failure_threshold=1)


def test_http_get_ready(watch: Watch, web: str) -> None:
    health = watch.one(web, readiness=http("/index.html"))
    # httpd may still be binding when the first probe lands: allow a retry period.
    eventually(lambda: health().ready, timeout=2.5)
    assert health().live and health().message == ""


def test_http_get_404_stays_not_ready(watch: Watch, web: str) -> None:
    health = watch.one(web, readiness=http("/missing"))
    eventually(lambda: "HTTP status 404" in health().message)
    time.sleep(1.2)
    h = health()
    assert not h.ready and h.live and h.consecutive_failures >= 2
    assert h.message.startswith("readiness probe: GET http://") and h.message.endswith("/missing: HTTP status 404")


def test_tcp_socket_open_port_is_ready(watch: Watch, web: str) -> None:
    health = watch.one(web, readiness=tcp(8080))
    eventually(lambda: health().ready, timeout=2.5)


def test_tcp_socket_closed_port_is_not_ready(watch: Watch, web: str) -> None:
    health = watch.one(web, readiness=tcp(8081))
    eventually(lambda: health().consecutive_failures >= 1)
    h = health()
    assert not h.ready and ":8081: " in h.message and "refused" in h.message.lower()


def test_exec_readiness_follows_a_file(watch: Watch, idle: str, client: docker.DockerClient) -> None:
    probe = Probe(handler="exec", command=("cat", "/tmp/ready"), period_s=1, timeout_s=1, failure_threshold=1)
    health = watch.one(idle, readiness=probe)
    eventually(lambda: health().consecutive_failures >= 1)
    h = health()
    assert not h.ready and h.message.startswith("readiness probe: exit code 1: ") and "/tmp/ready" in h.message
    assert watch.changes == 0
    # The test image has no /tmp.
    made = client.containers.get(idle).exec_run(["sh", "-c", "mkdir -p /tmp && touch /tmp/ready"])
    assert made.exit_code == 0, made.output
    eventually(lambda: health().ready, timeout=2.5)
    eventually(lambda: watch.changes == 1)


def test_exec_liveness_failing_three_times_is_not_live(watch: Watch, idle: str) -> None:
    probe = Probe(handler="exec", command=("sh", "-c", "echo sick; exit 3"), period_s=1, timeout_s=1)
    started = time.monotonic()
    health = watch.one(idle, liveness=probe)
    eventually(lambda: health().consecutive_failures == 0 and not health().live, timeout=4.0)
    # Three failures a period apart: the first at once, the third two periods later.
    assert time.monotonic() - started >= 1.9
    h = health()
    assert h.ready and h.message == "liveness probe: exit code 3: sick"
    eventually(lambda: watch.changes == 1)


def test_container_without_an_address_fails_network_probes(watch: Watch, client: docker.DockerClient) -> None:
    with started(client, SERVE, network_mode="none") as cid:
        health = watch.one(cid, readiness=tcp(8080))
        eventually(lambda: health().consecutive_failures >= 1)
        assert "no IP address for container" in health().message and "network mode none" in health().message


def test_grpc_readiness_follows_the_health_service(watch: Watch, client: docker.DockerClient) -> None:
    # A hostNetwork container is probed on 127.0.0.1, where this process serves the standard health service.
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with started(client, SERVE, network_mode="host") as cid:
            checks.set("", health_pb2.HealthCheckResponse.SERVING)
            probe = Probe(handler="grpc", port=port, period_s=1, timeout_s=1, failure_threshold=1)
            state = watch.one(cid, readiness=probe)
            eventually(lambda: state().ready, timeout=2.5)
            checks.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            eventually(lambda: not state().ready, timeout=2.5)
            assert state().message.endswith("NOT_SERVING")
    finally:
        server.stop(None)
