"""The daemon's small HTTP endpoints (metrics, webhook): a stdlib threading server per address.

Each endpoint is a plain function from ``Request`` to ``Response``, so its logic is tested
without sockets; this module only reads a bounded body and writes the answer.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

# Bodies past this size are refused unread (413); a push event is a few KiB, its largest tens.
MAX_BODY_BYTES = 1024 * 1024
# A client that sends nothing for this long is dropped, so slow clients cannot hold threads.
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Request:
    """One HTTP request: header names as sent (``header`` looks them up case-insensitively)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of header ``name``, whatever its case, or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass(frozen=True)
class Response:
    """What an endpoint answers."""

    status: int
    body: str | bytes
    content_type: str = "text/plain; charset=utf-8"


Endpoint = Callable[[Request], Response]


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (the default host) as a bind address (port 0: any free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: expected host:port, e.g. 127.0.0.1:9100")
    host = host.removeprefix("[").removesuffix("]") or default_host
    if host != "localhost":
        ipaddress.ip_address(host)  # a name would resolve to who knows which interface
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: Endpoint):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(self._read())

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the endpoint, which answers 405 for those it does not take
        # (http.server's own answer for a method without a do_ handler would be 501).
        if name.startswith("do_"):
            return self.do_GET
        raise AttributeError(name)

    def _read(self) -> Request | Response:
        if self.headers.get("Transfer-Encoding"):
            return Response(411, "a Content-Length is required\n")
        raw = self.headers.get("Content-Length", "0")
        if not raw.isdigit():
            return Response(400, "bad Content-Length\n")
        if int(raw) > MAX_BODY_BYTES:
            return Response(413, f"body over {MAX_BODY_BYTES} bytes\n")
        body = self.rfile.read(int(raw))
        if len(body) != int(raw):
            return Response(400, "body shorter than its Content-Length\n")
        return Request(self.command, self.path.split("?", 1)[0], dict(self.headers.items()), body)

    def _answer(self, got: Request | Response) -> None:
        if isinstance(got, Request):
            try:
                got = self.server.endpoint(got)
            except Exception:  # a bug in an endpoint must not take the daemon's thread with it
                log.exception("%s %s failed", self.command, self.path)
                got = Response(500, "internal error\n")
        body = got.body.encode() if isinstance(got.body, str) else got.body
        # Anything left unread must not be taken for the next request on this connection.
        self.close_connection = True
        self.send_response(got.status)
        self.send_header("Content-Type", got.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.address_string(), *args)


class HttpEndpoint:
    """Serves ``endpoint`` on ``address`` from its own threads until closed."""

    def __init__(self, address: tuple[str, int], endpoint: Endpoint, name: str):
        self.server = _Server(address, endpoint)
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one chosen for port 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the socket."""
        self.server.shutdown()
        self.server.server_close()
