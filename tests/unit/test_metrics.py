"""Metrics, /healthz and /readyz: real passes (real git repository, engine in memory), scraped over HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.config import Config
from gitops.gpu import DeclaredInventory
from gitops.metrics import STUCK_AFTER_S, PassHealth
from gitops.reconcile.reconciler import PassFailed, Reconciler
from gitops.runtime.base import RuntimeUnavailable
from gitops.serve import HttpEndpoint
from tests.builders import TEST_IMAGE, deployment
from tests.fakes import FakeRuntime
from tests.helpers import Repo, scrape


class Node:
    """A reconciler on an in-memory engine with its metrics served on a free loopback port."""

    def __init__(self, repo: Repo, tmp_path: Path):
        self.runtime = FakeRuntime(images={TEST_IMAGE})
        cfg = Config(repo=str(repo.path), node="n1", state_dir=tmp_path / "state", settle_seconds=0.0)
        self.rec = Reconciler(cfg, DeclaredInventory([]), runtime=self.runtime)
        self.http = HttpEndpoint(("127.0.0.1", 0), self.rec.metrics.serve, "metrics")
        self.url = f"http://127.0.0.1:{self.http.port}"

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.url + "/metrics")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def close(self) -> None:
        self.http.close()
        self.rec.close()


@pytest.fixture
def node(repo: Repo, tmp_path: Path) -> Iterator[Node]:
    n = Node(repo, tmp_path)
    yield n
    n.close()


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


WEB = labels(namespace="default", kind="Deployment", name="web")


def test_a_pass_with_actions_is_counted_by_outcome_action_and_workload(node: Node, repo: Repo) -> None:
    assert node.get("/readyz") == (503, "no pass completed yet\n")
    repo.put("apps/web.yaml", deployment("web", 3, image=TEST_IMAGE))
    node.rec.run_pass()
    node.rec.run_pass()  # nothing to do: a second pass, no second action
    m = node.samples()
    assert m[("gitops_pass_duration_seconds_count", labels(outcome="ok"))] == 2
    assert m[("gitops_actions_total", labels(action="run", result="ok"))] == 3
    assert ("gitops_actions_total", labels(action="remove", result="ok")) not in m
    assert m[("gitops_reconcile_duration_seconds_count", WEB)] == 3
    assert m[("gitops_git_duration_seconds_count", labels(operation="fetch"))] == 2
    # The second pass changed nothing and no heartbeat was due: one push.
    assert m[("gitops_git_duration_seconds_count", labels(operation="push"))] == 1
    assert m.get(("gitops_git_failures_total", labels(operation="fetch")), 0) == 0
    assert m[("gitops_placement_duration_seconds_count", frozenset())] == 2
    assert m[("gitops_nodes_live", frozenset())] == 1
    assert m[("gitops_status_records_rejected", frozenset())] == 0
    assert m[("gitops_replicas", WEB | labels(state="ready"))] == 3
    assert m[("gitops_rollout_state", WEB | labels(state="complete"))] == 1
    assert m[("gitops_rollout_state", WEB | labels(state="progressing"))] == 0
    assert node.get("/readyz") == (200, "ok\n")
    assert node.get("/healthz") == (200, "ok\n")

    # Scaled down: one removal; deleted: the workload's series go with it.
    repo.put("apps/web.yaml", deployment("web", 2, image=TEST_IMAGE))
    node.rec.run_pass()
    node.rec.executor.close()  # removals run in the background: let them finish
    m = node.samples()
    assert m[("gitops_actions_total", labels(action="remove", result="ok"))] == 1
    assert m[("gitops_replicas", WEB | labels(state="ready"))] == 2
    assert m[("gitops_reconcile_duration_seconds_count", WEB)] == 4


def test_a_deleted_workload_leaves_no_series(node: Node, repo: Repo) -> None:
    repo.put("apps/web.yaml", deployment("web", 1, image=TEST_IMAGE))
    repo.put("apps/api.yaml", deployment("api", 1, image=TEST_IMAGE))
    node.rec.run_pass()
    repo.remove("apps/web.yaml")
    node.rec.run_pass()
    node.rec.executor.close()
    node.rec.run_pass()
    names = {(name, dict(ls).get("name")) for name, ls in node.samples()}
    assert ("gitops_reconcile_duration_seconds_count", "api") in names
    assert ("gitops_rollout_state", "api") in names
    assert not {n for n in names if n[1] == "web"}


def test_engine_and_git_failures_make_the_node_unready(node: Node, repo: Repo, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", 1, image=TEST_IMAGE))
    node.rec.run_pass()
    node.runtime.fail("list_managed", RuntimeUnavailable("engine down"))
    with pytest.raises(PassFailed):
        node.rec.run_pass()
    assert node.get("/readyz") == (503, "container engine unreachable at the last pass\n")
    repo.path.rename(tmp_path / "moved")  # the repository is gone: fetches fail, the last revision stays
    node.rec.run_pass()
    m = node.samples()
    assert m[("gitops_pass_duration_seconds_count", labels(outcome="failed"))] == 1
    assert m[("gitops_pass_duration_seconds_count", labels(outcome="errors"))] == 1
    assert m[("gitops_git_failures_total", labels(operation="fetch"))] == 1
    assert node.get("/readyz") == (503, "git fetch failed at the last pass\n")
    assert node.get("/healthz")[0] == 200


def test_only_a_pass_running_too_long_is_unhealthy() -> None:
    health = PassHealth(running_since=100.0)
    assert health.healthy(100.0 + STUCK_AFTER_S) is None
    assert "stuck" in (health.healthy(101.0 + STUCK_AFTER_S) or "")
    assert PassHealth().healthy(1e9) is None


def test_unknown_paths_and_methods_are_refused(node: Node) -> None:
    assert node.get("/")[0] == 404
    req = urllib.request.Request(node.url + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_the_dashboard_queries_only_metrics_the_daemon_exports() -> None:
    from gitops.metrics import Metrics

    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    exported = {f.name + s for f in Metrics().registry.collect() for s in suffixes[f.type]}
    text = (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    used = set(re.findall(r"gitops_[a-z_]+", text))
    assert used and used <= exported, used - exported


def test_passes_crashing_in_a_row_are_unhealthy_until_one_completes(node: Node, repo: Repo) -> None:
    from gitops.metrics import MAX_CRASHES

    node.runtime.fail("list_managed", KeyError("a bug"), times=MAX_CRASHES)
    for _ in range(MAX_CRASHES):
        assert node.get("/healthz")[0] == 200
        with pytest.raises(KeyError):
            node.rec.run_pass()
    assert node.get("/healthz") == (503, f"{MAX_CRASHES} passes crashed in a row\n")
    node.rec.run_pass()
    assert node.get("/healthz") == (200, "ok\n")
    assert node.samples()[("gitops_pass_duration_seconds_count", labels(outcome="crashed"))] == MAX_CRASHES
