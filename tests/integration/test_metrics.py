"""Metrics after a pass that acted on the real engine, scraped over HTTP by prometheus-client's parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.serve import HttpEndpoint
from tests.builders import deployment
from tests.helpers import Repo, make_reconciler, managed, scrape

pytestmark = pytest.mark.usefixtures("docker_engine")


def test_metrics_after_a_pass_on_the_engine(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", 2, engine=True))
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state")
    http = HttpEndpoint(("127.0.0.1", 0), rec.metrics.serve, "metrics")
    try:
        report = rec.run_pass()
        assert report.ok and len(managed(node_name, state="running")) == 2
        m = scrape(f"http://127.0.0.1:{http.port}/metrics")
    finally:
        http.close()
        rec.close()
    web = frozenset({("namespace", "default"), ("kind", "Deployment"), ("name", "web")})
    assert m[("gitops_actions_total", frozenset({("action", "run"), ("result", "ok")}))] == 2
    assert m[("gitops_pass_duration_seconds_count", frozenset({("outcome", "ok")}))] == 1
    assert m[("gitops_reconcile_duration_seconds_count", web)] == 2
    # Each replica's engine calls (create and start) take real time on a real engine.
    assert m[("gitops_reconcile_duration_seconds_sum", web)] > 0.01
    running = sum(v for (name, ls), v in m.items() if name == "gitops_replicas" and web <= ls)
    assert running == 2
    assert m[("gitops_git_duration_seconds_count", frozenset({("operation", "push")}))] == 1
