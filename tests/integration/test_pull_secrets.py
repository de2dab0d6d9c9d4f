"""imagePullSecrets on the real engine: the credentials reach the registry (a stand-in that only records them)."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import deployment
from tests.helpers import Repo
from tests.integration.test_single_node import reconciler

pytestmark = pytest.mark.usefixtures("docker_engine")


class _Registry(http.server.BaseHTTPRequestHandler):
    """Asks for Basic auth, records what it gets, and knows no image (so nothing is stored)."""

    seen: list[str | None]

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        if auth is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.end_headers()
            return
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}')

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[tuple[str, list[str | None]]]:
    """A registry on 127.0.0.1 (plain HTTP, which Docker allows for loopback): its address and the auth seen."""
    seen: list[str | None] = []
    handler = type("Handler", (_Registry,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_pulls_carry_the_pull_secrets_credentials(
    repo: Repo, node_name: str, tmp_path: Path, registry: tuple[str, list[str | None]]
) -> None:
    address, seen = registry
    token = base64.b64encode(b"robot:pull-s3cret").decode()
    secret = tmp_path / "secrets" / "default" / "regcred" / ".dockerconfigjson"
    secret.parent.mkdir(parents=True)
    secret.write_text(json.dumps({"auths": {address: {"auth": token}}}))
    app = deployment("private", image=f"{address}/team/app:1", pod="imagePullSecrets: [{name: regcred}]")
    repo.put("apps/private.yaml", app)
    rec = reconciler(repo, node_name, tmp_path)
    rec.run_pass()
    assert f"Basic {token}" in seen, seen
    (row,) = repo.status(node_name)["workloads"]
    assert row["reason"] == "ImagePullFailed" and "manifest unknown" in row["message"]
    assert "pull-s3cret" not in repo.status_yaml(node_name)
    rec.close()
