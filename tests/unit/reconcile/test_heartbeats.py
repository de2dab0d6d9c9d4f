"""Heartbeats between passes are one push each, from the heartbeat thread; passes keep the interval.

A pass woken for every heartbeat fetched and read every peer's new record each heartbeat
period: with N nodes, N fetches of N changed branches per period on the Git server
(docs/benchmarks.md, many nodes). Real git repository, engine in memory.
"""

from __future__ import annotations

import time
from pathlib import Path

from gitops.config import Config
from gitops.gpu import DeclaredInventory
from gitops.reconcile.reconciler import Reconciler
from gitops.source import STATUS_PREFIX
from tests.builders import TEST_IMAGE, deployment
from tests.fakes import FakeRuntime
from tests.helpers import Repo

CLUSTER = "apiVersion: gitops/v1\nkind: Cluster\nmetadata: {name: c}\nspec: {heartbeatSeconds: 1}\n"


def node(repo: Repo, tmp_path: Path, name: str, interval: float = 30.0) -> Reconciler:
    cfg = Config(repo=str(repo.path), node=name, state_dir=tmp_path / name, settle_seconds=0.0, interval=interval)
    return Reconciler(cfg, DeclaredInventory([]), runtime=FakeRuntime(images={TEST_IMAGE}))


def test_a_heartbeat_is_one_push_without_a_fetch(repo: Repo, tmp_path: Path) -> None:
    repo.put("cluster.yaml", CLUSTER)
    repo.put("apps/web.yaml", deployment("web", 1, image=TEST_IMAGE))
    a, b = node(repo, tmp_path, "a"), node(repo, tmp_path, "b")
    try:
        assert a.run_pass().pushed
        first = repo.status("a")["heartbeat"]
        assert b.run_pass().pushed  # a peer's record a has not fetched yet
        assert a.heartbeat() is False, "not due yet"
        time.sleep(1.1)
        assert a.heartbeat() is True
        assert repo.status("a")["heartbeat"] > first
        # No fetch: a's mirror still knows nothing of b, and the record a re-published is its pass's.
        assert a.source.git("for-each-ref", STATUS_PREFIX + "b") == b""
        assert repo.status("a")["liveNodes"] == ["a"]
        a.run_pass()
        assert repo.status("a")["liveNodes"] == ["a", "b"], "the next pass fetches and reads peers"
    finally:
        a.close()
        b.close()


def test_passes_are_not_woken_for_heartbeats(repo: Repo, tmp_path: Path) -> None:
    repo.put("cluster.yaml", CLUSTER)
    rec = node(repo, tmp_path, "a", interval=20.0)
    try:
        assert rec.run_pass().pushed
        time.sleep(1.1)
        # The heartbeat (1 s) is overdue; the next pass is still the interval's.
        assert rec.next_wake_in() > 18.0
    finally:
        rec.close()
