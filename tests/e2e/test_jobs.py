"""Jobs on the real engine with in-process nodes sharing one repository: Indexed, suspend, TTL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from gitops.reconcile.reconciler import Reconciler
from tests.builders import SERVE, job
from tests.helpers import DOCKER_HOST, Repo, make_reconciler, managed, remove_node_containers, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

CLUSTER = """\
apiVersion: gitops/v1
kind: Cluster
metadata: {name: jobs}
spec: {heartbeatSeconds: 1, nodeTimeoutSeconds: 60}
"""


@pytest.fixture
def names() -> Iterator[list[str]]:
    prefix = "j" + uuid.uuid4().hex[:6]
    nodes = [f"{prefix}-{i}" for i in range(3)]
    yield nodes
    for node in nodes:
        remove_node_containers(node)


def rows(repo: Repo, node: str, name: str) -> list[dict[str, object]]:
    return [r for r in repo.status(node).get("workloads", []) if r["name"] == name]


def logs(cid: str) -> str:
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        out: bytes = client.api.logs(cid)
    return out.decode().strip()


def joined(repo: Repo, names: list[str], tmp_path: Path) -> list[Reconciler]:
    """Three in-process nodes that have each published and seen the others, so they agree on placement."""
    repo.put("cluster.yaml", CLUSTER)
    recs = [make_reconciler(str(repo.path), n, tmp_path / n, interval=1) for n in names]
    for _ in range(2):
        for rec in recs:
            rec.run_pass()
    return recs


def test_indexed_job_runs_each_index_once_across_three_nodes(repo: Repo, names: list[str], tmp_path: Path) -> None:
    recs = joined(repo, names, tmp_path)
    command = ["sh", "-c", 'echo "index=$JOB_COMPLETION_INDEX host=$HOSTNAME"']
    spec = "completionMode: Indexed\ncompletions: 5\nparallelism: 5"
    repo.put("jobs/shard.yaml", job("shard", engine=True, command=command, spec=spec))

    def all_succeeded() -> bool:
        for rec in recs:
            rec.run_pass()
        done = [r for n in names for r in rows(repo, n, "shard") if r["state"] == "succeeded"]
        return sorted(int(str(r["replica"])) for r in done) == [0, 1, 2, 3, 4]

    wait_for(all_succeeded, timeout=60, interval=0.2, what="every index succeeded")
    containers = {n: [c for c in managed(n) if c["Labels"]["gitops.name"] == "shard"] for n in names}
    seen = sorted((int(c["Labels"]["gitops.replica"]), logs(c["Id"])) for cs in containers.values() for c in cs)
    # Exactly once: one container per index in the whole cluster, each seeing its own index.
    assert seen == [(i, f"index={i} host=shard-{i}") for i in range(5)]
    assert sorted(len(cs) for cs in containers.values()) == [1, 2, 2], "placement spreads the indices evenly"
    for rec in recs:
        rec.close()


def test_a_fail_job_rule_on_one_node_ends_the_indices_on_the_others(
    repo: Repo, names: list[str], tmp_path: Path
) -> None:
    recs = joined(repo, names, tmp_path)
    command = ["sh", "-c", f'[ "$JOB_COMPLETION_INDEX" = 1 ] && exit 42; {SERVE[2]}']
    spec = """\
        completionMode: Indexed
        completions: 3
        parallelism: 3
        podFailurePolicy:
          rules: [{action: FailJob, onExitCodes: {operator: In, values: [42]}}]
        """
    repo.put("jobs/shard.yaml", job("shard", engine=True, command=command, grace_s=1, spec=spec))

    def failed() -> dict[int, object]:
        for rec in recs:
            rec.run_pass()
        found = [r for n in names for r in rows(repo, n, "shard") if r["state"] == "failed"]
        return {int(str(r["replica"])): r.get("reason") for r in found} if len(found) == 3 else {}

    got = wait_for(failed, timeout=60, interval=0.2, what="every index failed")
    # One index per node (placement balances): the Job's failure reached the others through Git.
    assert sorted(len(rows(repo, n, "shard")) for n in names) == [1, 1, 1]
    assert got == {0: "JobFailed", 1: "PodFailurePolicy", 2: "JobFailed"}
    wait_for(lambda: not any(managed(n, state="running") for n in names), what="the other indices stopped")
    for rec in recs:
        rec.close()


def single(repo: Repo, node: str, tmp_path: Path) -> Reconciler:
    return make_reconciler(str(repo.path), node, tmp_path / node, interval=1)


def test_suspend_stops_the_pods_and_resume_starts_them_again(repo: Repo, node_name: str, tmp_path: Path) -> None:
    def manifest(suspend: bool) -> str:
        spec = f"completions: 2\nparallelism: 2\nsuspend: {str(suspend).lower()}"
        return job("batch", engine=True, command=SERVE, grace_s=1, spec=spec)

    repo.put("jobs/batch.yaml", manifest(False))
    rec = single(repo, node_name, tmp_path)
    rec.run_pass()
    assert len(managed(node_name, state="running")) == 2
    repo.put("jobs/batch.yaml", manifest(True))
    rec.run_pass()
    wait_for(lambda: not managed(node_name), what="a suspended Job's containers removed")
    rec.run_pass()
    assert {(r["state"], r["reason"]) for r in rows(repo, node_name, "batch")} == {("starting", "Suspended")}
    repo.put("jobs/batch.yaml", manifest(False))
    rec.run_pass()
    assert len(managed(node_name, state="running")) == 2, "resumed"
    rec.close()


def test_ttl_removes_finished_containers_and_keeps_the_result(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("jobs/once.yaml", job("once", engine=True, spec="ttlSecondsAfterFinished: 0"))
    rec = single(repo, node_name, tmp_path)

    def removed() -> bool:
        rec.run_pass()
        return not managed(node_name) and [r["state"] for r in rows(repo, node_name, "once")] == ["succeeded"]

    wait_for(removed, timeout=20, interval=0.3, what="the finished Job's container removed, its result kept")
    rec.run_pass()
    assert not managed(node_name), "not run again"
    rec.close()
