"""The daemon's HTTP endpoints: a signed push webhook applies a commit long before the poll interval; metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.builders import deployment
from tests.helpers import DaemonProcess, GitServer, Repo, bare_repo, free_port, managed, scrape, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

# Heartbeats every 5 min and a 2 min interval: no pass but the webhook's can happen during the test.
CLUSTER = """\
apiVersion: gitops/v1
kind: Cluster
metadata:
  name: cluster
spec:
  heartbeatSeconds: 300
  nodeTimeoutSeconds: 600
"""


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except (urllib.error.URLError, ConnectionError):
        return 0


def passes(port: int) -> float:
    return scrape(f"http://127.0.0.1:{port}/metrics")[
        ("gitops_pass_duration_seconds_count", frozenset({("outcome", "ok")}))
    ]


def test_a_signed_push_webhook_applies_the_commit_at_once(
    node_name: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    bare = bare_repo(tmp_path / "served")
    server = GitServer(bare.parent).start()
    work = Repo(tmp_path / "work")
    work.write("cluster.yaml", CLUSTER)
    work.put("apps/web.yaml", deployment("web", 1, engine=True))
    subprocess.run(["git", "-C", str(work.path), "push", "-q", server.url(), "main"], check=True)
    secret = tmp_path / "webhook-secret"
    secret.write_text("It's a Secret to Everybody\n")
    hook, metrics = free_port(), free_port()
    env = {
        "GITOPS_WEBHOOK": json.dumps({"address": f"127.0.0.1:{hook}", "secret_file": str(secret)}),
        "GITOPS_METRICS_ADDRESS": f"127.0.0.1:{metrics}",
        "GITOPS_SETTLE_SECONDS": "0",  # alone: no peers to learn of first
    }
    state = tmp_path / "state"
    d = DaemonProcess(server.url(), node_name, state, tmp_path / "d.log", interval=120, extra_env=env).start()
    daemons.append(d)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{metrics}/readyz") == 200, timeout=30, what="ready")
        wait_for(lambda: len(managed(node_name, state="running")) == 1, what="first replica")
        # The pass after one that acted comes a second later; then the daemon sleeps until its interval.
        wait_for(lambda: passes(metrics) >= 2, what="the follow-up pass")

        work.put("apps/web.yaml", deployment("web", 2, engine=True))
        subprocess.run(["git", "-C", str(work.path), "push", "-q", server.url(), "main"], check=True)
        time.sleep(2)
        assert len(managed(node_name, state="running")) == 1, "nothing but the webhook wakes this daemon"

        body = json.dumps({"ref": "refs/heads/main", "after": work.head(), "repository": {"name": "cluster"}}).encode()
        signature = "sha256=" + hmac.new(b"It's a Secret to Everybody", body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": signature}
        sent = time.monotonic()
        req = urllib.request.Request(f"http://127.0.0.1:{hook}/hooks/push", data=body, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        wait_for(lambda: len(managed(node_name, state="running")) == 2, timeout=15, what="second replica")
        took = time.monotonic() - sent
        assert took < 15, f"applied {took:.1f}s after the webhook (interval 120s)"

        m = scrape(f"http://127.0.0.1:{metrics}/metrics")
        assert m[("gitops_actions_total", frozenset({("action", "run"), ("result", "ok")}))] == 2
        assert m[("gitops_nodes_live", frozenset())] == 1
    finally:
        server.stop()
    assert "webhook: 200 pass triggered by a push to refs/heads/main" in d.output()
