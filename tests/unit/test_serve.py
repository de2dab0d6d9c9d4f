"""The HTTP endpoints' server: bind addresses, body limits, answers for malformed requests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gitops.config import Config
from gitops.serve import MAX_BODY_BYTES, HttpEndpoint, Request, Response, parse_address


@pytest.mark.parametrize(
    ("text", "want"),
    [(":9100", ("127.0.0.1", 9100)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9", ("::1", 9))],
)
def test_bind_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["9100", "host.example:9100", "127.0.0.1:", "127.0.0.1:70000", "1.2.3.4:x"])
def test_bad_bind_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ValueError):
        Config(metrics_address=text)


@pytest.fixture
def echo() -> Iterator[HttpEndpoint]:
    seen: list[Request] = []

    def endpoint(request: Request) -> Response:
        seen.append(request)
        if request.path == "/boom":
            raise RuntimeError("a bug")
        return Response(200, f"{request.method} {len(request.body)} {request.header('x-CASE')}")

    http = HttpEndpoint(("127.0.0.1", 0), endpoint, "echo")
    yield http
    http.close()


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: s.recv(65536), b""))


def test_the_endpoint_gets_method_body_and_headers(echo: HttpEndpoint) -> None:
    got = raw(echo.port, b"POST /x?q=1 HTTP/1.1\r\nHost: h\r\nX-Case: yes\r\nContent-Length: 3\r\n\r\nabc")
    assert got.startswith(b"HTTP/1.0 200") and got.endswith(b"POST 3 yes")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (f"Content-Length: {MAX_BODY_BYTES + 1}", b"413"),
        ("Transfer-Encoding: chunked", b"411"),
        ("Content-Length: -1", b"400"),
        ("Content-Length: 10", b"400"),  # the body is shorter
    ],
)
def test_bodies_too_large_unsized_or_short_are_refused_unread(echo: HttpEndpoint, headers: str, status: bytes) -> None:
    got = raw(echo.port, f"POST / HTTP/1.1\r\nHost: h\r\n{headers}\r\n\r\nabc".encode())
    assert got.split(b" ")[1] == status


def test_an_endpoint_bug_answers_500_and_the_server_goes_on(echo: HttpEndpoint) -> None:
    assert raw(echo.port, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n").split(b" ")[1] == b"500"
    assert raw(echo.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").split(b" ")[1] == b"200"


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "OPTIONS", "BREW"])
def test_every_method_reaches_the_endpoint(echo: HttpEndpoint, method: str) -> None:
    got = raw(echo.port, f"{method} / HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert got.split(b" ")[1] == b"200"
    assert got.endswith(b"\r\n\r\n") if method == "HEAD" else got.endswith(f"{method} 0 None".encode())
