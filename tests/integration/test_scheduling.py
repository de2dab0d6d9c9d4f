"""Scheduling on three in-process nodes and the real engine: anti-affinity, preferred affinity, taints (issue 10)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitops.reconcile.reconciler import Reconciler
from tests.builders import deployment
from tests.helpers import Repo, make_reconciler, managed, remove_node_containers, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

ONE_PER_NODE = """\
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
    - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}
"""


@pytest.fixture
def trio(node_name: str) -> Iterator[list[str]]:
    """Three node names; their containers are removed afterwards."""
    names = [f"{node_name}-{x}" for x in "abc"]
    yield names
    for name in names:
        remove_node_containers(name)


def start(repo: Repo, node: str, tmp_path: Path, **overrides: object) -> Reconciler:
    """An in-process node (8 cores unless overridden); a second call for the same node is a restart."""
    return make_reconciler(str(repo.path), node, tmp_path / f"state-{node}", **overrides)


def running(node: str, workload: str) -> int:
    """Running containers of ``workload`` on ``node``."""
    return sum(1 for c in managed(node, state="running") if c["Labels"].get("gitops.name") == workload)


def counts(names: list[str], workload: str) -> list[int]:
    """Running containers of ``workload`` on each node of ``names``."""
    return [running(n, workload) for n in names]


def settle(recs: list[Reconciler], done: Callable[[], bool], what: str, timeout: float = 40) -> None:
    """Run passes on every node in turn until ``done()``."""

    def passes() -> bool:
        for rec in recs:
            rec.run_pass()
        return done()

    wait_for(passes, timeout=timeout, interval=0, what=what)


def test_anti_affinity_spreads_one_per_node_and_a_preference_is_honoured_where_it_fits(
    repo: Repo, trio: list[str], tmp_path: Path
) -> None:
    a, b, c = trio
    recs = [start(repo, a, tmp_path), start(repo, b, tmp_path), start(repo, c, tmp_path, cpu_millis=2000)]
    # Preferences act when a replica is placed: the nodes first learn of each other.
    settle(recs, lambda: all(set(repo.status(n).get("liveNodes", [])) == set(trio) for n in trio), "nodes meet")
    repo.put("apps/web.yaml", deployment("web", 4, engine=True, pod=ONE_PER_NODE))
    # Two replicas of 1.5 cores preferring node c, which has 2 cores: one fits there, the other goes elsewhere.
    prefer_c = f"""\
        affinity:
          nodeAffinity:
            preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 50
              preference: {{matchFields: [{{key: metadata.name, operator: In, values: [{c}]}}]}}
        """
    repo.put(
        "apps/pref.yaml",
        deployment("pref", 2, engine=True, pod=prefer_c, container="resources: {requests: {cpu: 1500m}}"),
    )
    settle(recs, lambda: counts(trio, "web") == [1, 1, 1] and sum(counts(trio, "pref")) == 2, "web and pref placed")
    for rec in recs:  # and it stays so
        rec.run_pass()
    assert counts(trio, "web") == [1, 1, 1]
    pref = counts(trio, "pref")
    assert pref[2] == 1 and sum(pref) == 2, pref
    # The first live node speaks for the replica that fits nowhere.
    rows = [r for n in trio for r in repo.status(n)["workloads"] if r["state"] == "unschedulable"]
    assert [(r["name"], r["reason"]) for r in rows] == [("web", "Unschedulable")]
    assert rows[0]["message"] == "0/3 matching nodes fit (anti-affinity: node already holds a replica: 3)"


def test_no_schedule_keeps_new_work_off_and_no_execute_moves_running_work(
    repo: Repo, trio: list[str], tmp_path: Path
) -> None:
    c = trio[2]
    repo.put("apps/web.yaml", deployment("web", 3, engine=True))
    recs = [start(repo, n, tmp_path) for n in trio]
    settle(recs, lambda: counts(trio, "web") == [1, 1, 1], "one web replica per node")

    # c restarts tainted NoSchedule: its running replica stays, new work goes elsewhere.
    recs[2] = start(repo, c, tmp_path, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    repo.put("apps/late.yaml", deployment("late", 4, engine=True))
    settle(recs, lambda: counts(trio, "late") == [2, 2, 0], "late on a and b only")
    assert counts(trio, "web") == [1, 1, 1]
    assert repo.status(c)["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]

    # c restarts tainted NoExecute: the replica it runs moves away.
    recs[2] = start(repo, c, tmp_path, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}])
    settle(recs, lambda: counts(trio, "web")[2] == 0 and sum(counts(trio, "web")) == 3, "web off c")
    assert counts(trio, "late") == [2, 2, 0]

    # The taint's timeAdded (tolerationSeconds count from it) survives a restart.
    added = repo.status(c)["taints"][0]["timeAdded"]
    time.sleep(1.1)
    recs[2] = start(repo, c, tmp_path, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}])
    recs[2].run_pass()
    assert repo.status(c)["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoExecute", "timeAdded": added}]
