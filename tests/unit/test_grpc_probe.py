"""gRPC health probes against grpcio's own health servicer, in process."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gitops.health import grpc_check
from gitops.manifests.load import parse_file
from gitops.model import Probe
from tests.builders import deployment


@pytest.fixture
def servicer() -> Iterator[tuple[int, health.HealthServicer]]:
    """A gRPC server with the standard health service on a free local port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, checks
    server.stop(None)


def probe(port: int, service: str = "") -> Probe:
    return Probe(handler="grpc", port=port, service=service, timeout_s=2)


def test_serving_passes_and_anything_else_fails(servicer: tuple[int, health.HealthServicer]) -> None:
    port, checks = servicer
    checks.set("", health_pb2.HealthCheckResponse.SERVING)
    assert grpc_check("127.0.0.1", probe(port)).success is True
    checks.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert (o := grpc_check("127.0.0.1", probe(port))).success is False and o.message.endswith("NOT_SERVING")
    checks.set("api", health_pb2.HealthCheckResponse.SERVING)
    assert grpc_check("127.0.0.1", probe(port, "api")).success is True
    o = grpc_check("127.0.0.1", probe(port, "other"))
    assert o.success is False and "NOT_FOUND" in o.message


def test_nothing_listening_fails_with_the_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    o = grpc_check("127.0.0.1", probe(port))
    assert o.success is False and o.message.startswith(f"grpc 127.0.0.1:{port}: UNAVAILABLE")


def test_grpc_probes_are_read_from_manifests() -> None:
    text = deployment(container="readinessProbe: {grpc: {port: 9555, service: api}, timeoutSeconds: 2}")
    [w] = parse_file("app.yaml", text.encode()).workloads
    ready = w.pod.containers[0].readiness
    assert ready is not None and (ready.handler, ready.port, ready.service, ready.timeout_s) == ("grpc", 9555, "api", 2)


def test_the_daemon_loads_grpcio_only_for_a_grpc_probe() -> None:
    code = "import sys, gitops.health, gitops.reconcile.reconciler; print('grpc' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
