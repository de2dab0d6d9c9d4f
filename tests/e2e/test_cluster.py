"""Several daemons, one repository served by ``git daemon``: placement, failover, handoff, fencing, GPUs."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.builders import SERVE, deployment, job
from tests.helpers import (
    DOCKER_HOST,
    DaemonProcess,
    GitServer,
    Periodic,
    Repo,
    bare_repo,
    git,
    remove_node_containers,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("docker_engine")

CLUSTER = """\
apiVersion: gitops/v1
kind: Cluster
metadata: {name: test}
spec:
  heartbeatSeconds: 1
  nodeTimeoutSeconds: 5
  cordoned: %s
"""


class Cluster:
    """A bare repository, one git server per node (so one node can be cut off), and daemons."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.prefix = "c" + uuid.uuid4().hex[:6]
        self.bare = bare_repo(tmp / "served")
        self.work = Repo(tmp / "work")
        self.servers: dict[str, GitServer] = {}
        self.daemons: dict[str, DaemonProcess] = {}
        self.client = docker.DockerClient(base_url=DOCKER_HOST)

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def push(self, rel: str, text: str) -> None:
        self.work.put(rel, text)
        git(self.work.path, "push", "-q", "-f", str(self.bare), "main")

    def start(
        self, short: str, gpus: str = "[]", labels: str = "{}", env: dict[str, str] | None = None
    ) -> DaemonProcess:
        node = self.name(short)
        server = self.servers.get(node) or GitServer(self.bare.parent)
        self.servers[node] = server.start()
        d = DaemonProcess(
            server.url(), node, self.tmp / f"state-{node}", self.tmp / f"{node}.log", interval=1,
            extra_env={"GITOPS_GPUS": gpus, "GITOPS_LABELS": labels, **(env or {})},
        ).start()  # fmt: skip
        self.daemons[node] = d
        return d

    def containers(self, *labels: str, all_: bool = False) -> list[dict[str, Any]]:
        """List rows of this cluster's nodes' containers with all ``labels``: running ones unless ``all_``."""
        filters: dict[str, Any] = {"label": list(labels)} if all_ else {"label": list(labels), "status": "running"}
        rows = self.client.api.containers(all=all_, filters=filters)
        return [r for r in rows if r["Labels"].get("gitops.node", "").startswith(self.prefix)]

    def running(self, workload: str) -> Counter[str]:
        """Running containers of a workload per node, straight from the engine."""
        rows = self.containers("gitops.managed=true", f"gitops.name={workload}")
        return Counter(r["Labels"]["gitops.node"] for r in rows)

    def ids(self, workload: str, node: str) -> set[str]:
        rows = self.client.api.containers(
            filters={"label": [f"gitops.name={workload}", f"gitops.node={node}"], "status": "running"}
        )
        return {r["Id"] for r in rows}

    def status(self, node: str) -> dict[str, object]:
        """The status a node pushed to the served repository; {} if none yet."""
        return status_of(self.bare, node)

    def close(self) -> None:
        for d in self.daemons.values():
            if d.alive():
                d.kill(9)
        for s in self.servers.values():
            s.stop()
        for node in self.daemons:
            remove_node_containers(node)
        self.client.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


class Sampler(Periodic):
    """Samples a workload's running replicas cluster-wide every 0.5 s in the background."""

    def __init__(self, cluster: Cluster, workload: str):
        super().__init__()
        self.cluster, self.workload = cluster, workload
        self.per_node: list[Counter[str]] = []

    def sample(self) -> None:
        self.per_node.append(self.cluster.running(self.workload))

    @property
    def samples(self) -> list[int]:
        """Running copies cluster-wide, per sample."""
        return [sum(x.values()) for x in self.per_node]


def settled(c: Cluster, nodes: list[str], workload: str, per_node: dict[str, int]) -> bool:
    """The workload runs as ``per_node`` says (if given) and every node's digest agrees."""
    counts = c.running(workload)
    if per_node and (
        {n: counts.get(n, 0) for n in per_node} != per_node or sum(counts.values()) != sum(per_node.values())
    ):
        return False
    digests = {c.status(n).get("placementDigest") for n in nodes}
    return len(digests) == 1 and None not in digests


def test_six_replicas_failover_join_and_cordon(cluster: Cluster) -> None:
    c = cluster
    a, b, cc, d = (c.name(x) for x in "abcd")
    c.push("cluster.yaml", CLUSTER % "[]")
    c.push("apps/web.yaml", deployment("web", 6, engine=True))
    for short in "abc":
        c.start(short)
    wait_for(lambda: settled(c, [a, b, cc], "web", {a: 2, b: 2, cc: 2}), timeout=60, interval=0.5,
             what="2 replicas per node and agreeing digests")  # fmt: skip

    def ready_rows(n: str) -> int:
        rows = c.status(n)["workloads"]
        return len([r for r in rows if r["state"] == "ready"]) if isinstance(rows, list) else -1

    # Each node's record says so by its next pass (the engine may show the containers first).
    wait_for(lambda: [ready_rows(n) for n in (a, b, cc)] == [2, 2, 2], timeout=10, interval=0.5,
             what="each record shows 2 ready")  # fmt: skip

    # Kill node c with its containers: its replicas come back elsewhere, nothing else moves.
    survivors = c.ids("web", a) | c.ids("web", b)
    c.daemons[cc].kill(9)
    remove_node_containers(cc)
    t0 = time.monotonic()
    wait_for(lambda: sum(c.running("web").values()) == 6, timeout=5 + 2 * 1 + 10, interval=0.25,
             what="c's replicas rescheduled")  # fmt: skip
    took = time.monotonic() - t0
    assert took <= 5 + 2 * 1 + 4, f"failover took {took:.1f}s"
    assert survivors <= (c.ids("web", a) | c.ids("web", b)), "no surviving replica moved"

    # A fourth node joins: it gets a share, make-before-break (never fewer than 6 running).
    with Sampler(c, "web") as s:
        c.start("d")
        wait_for(lambda: c.running("web").get(d, 0) >= 1 and sum(c.running("web").values()) == 6, timeout=40,
                 interval=0.5, what="node d took its share")  # fmt: skip
        time.sleep(2)
    assert min(s.samples) >= 6, s.samples

    # Cordon node a: its replicas drain, make-before-break.
    with Sampler(c, "web") as s:
        c.push("cluster.yaml", CLUSTER % f"[{a}]")
        wait_for(lambda: c.running("web").get(a, 0) == 0 and sum(c.running("web").values()) == 6, timeout=40,
                 interval=0.5, what="cordoned node a drained")  # fmt: skip
    assert min(s.samples) >= 6, s.samples


def test_exclusive_workload_fenced_when_git_unreachable(cluster: Cluster) -> None:
    c = cluster
    nodes = [c.name(x) for x in "abc"]
    c.push("cluster.yaml", CLUSTER % "[]")
    c.push("apps/db.yaml", deployment("db", 1, engine=True, spec="strategy: {type: Recreate}"))
    for short in "abc":
        c.start(short)
    wait_for(lambda: all(c.status(n).get("liveNodes") == sorted(nodes) for n in nodes), timeout=30, interval=0.5,
             what="all nodes see each other")  # fmt: skip
    wait_for(lambda: settled(c, nodes, "db", {}) or None, timeout=30, interval=0.5, what="agreeing digests")
    holder = wait_for(lambda: next(iter(c.running("db")), None), timeout=30, interval=0.5, what="db running")
    with Sampler(c, "db") as s:
        c.servers[holder].stop()  # only the holder loses the Git server
        successor = wait_for(
            lambda: next((n for n in c.running("db") if n != holder), None), timeout=40, interval=0.25,
            what="db started on a successor",
        )  # fmt: skip
        time.sleep(2)
    assert successor != holder
    assert max(s.samples) <= 1, f"two copies ran at once: {s.samples}"
    assert c.running("db").get(holder, 0) == 0
    assert "fenced" in c.daemons[holder].output()


def test_gpu_replicas_land_on_gpu_node_with_distinct_uuids(cluster: Cluster) -> None:
    c = cluster
    a, b = c.name("a"), c.name("b")
    gpu = "resources: {limits: {nvidia.com/gpu: 1}}"
    c.push("cluster.yaml", CLUSTER % "[]")
    c.push("apps/train.yaml", deployment("train", 2, engine=True, container=gpu))
    c.start("a", gpus="[{uuid: GPU-aaaa-0, model: Test}, {uuid: GPU-aaaa-1, model: Test}]")
    c.start("b", gpus="[]")

    def created() -> list[dict[str, object]]:
        return list(c.client.api.containers(all=True, filters={"label": ["gitops.name=train"]}))

    rows = wait_for(lambda: (r := created()) and len(r) == 2 and r, timeout=40, interval=0.5, what="2 train containers")
    assert {r["Labels"]["gitops.node"] for r in rows} == {a}
    uuids = []
    for r in rows:
        reqs = c.client.api.inspect_container(r["Id"])["HostConfig"]["DeviceRequests"]
        assert len(reqs) == 1 and reqs[0]["Capabilities"] == [["gpu"]]
        uuids += reqs[0]["DeviceIDs"]
    assert sorted(uuids) == ["GPU-aaaa-0", "GPU-aaaa-1"]

    c.push("apps/train.yaml", deployment("train", 3, engine=True, container=gpu))
    head = c.work.head()

    def unschedulable() -> list[dict[str, object]] | None:
        out = []
        for n in (a, b):
            st = c.status(n)
            revision = st.get("revision")
            if not isinstance(revision, dict) or revision.get("sha") != head or st.get("liveNodes") != [a, b]:
                return None  # not yet a view of the new revision with both nodes
            rows = st.get("workloads") or []
            assert isinstance(rows, list)
            out += [r for r in rows if r["state"] == "unschedulable"]
        return out or None

    rows = wait_for(unschedulable, timeout=30, interval=0.5, what="third replica reported unschedulable")
    assert len(rows) == 1 and rows[0]["replica"] == 2 and "gpu" in str(rows[0]["message"]).lower()


def test_daemonset_on_every_matching_node_and_a_job_rerun_after_its_node_dies(cluster: Cluster) -> None:
    c = cluster
    a, b, cc = (c.name(x) for x in "abc")
    c.push("cluster.yaml", CLUSTER % "[]")
    agent = deployment("agent", kind="DaemonSet", engine=True, pod="nodeSelector: {disk: ssd}")
    c.push("apps/agent.yaml", agent)
    c.start("a", labels="{disk: ssd}")
    c.start("b", labels="{disk: ssd}")
    c.start("c", labels="{disk: hdd}")
    wait_for(lambda: dict(c.running("agent")) == {a: 1, b: 1}, timeout=40, interval=0.5,
             what="one agent on each ssd node, none elsewhere")  # fmt: skip
    wait_for(lambda: all(c.status(n).get("liveNodes") == [a, b, cc] for n in (a, b, cc)), timeout=30,
             interval=0.5, what="all nodes see each other")  # fmt: skip

    # A long Job: kill its node mid-run (daemon and containers); it runs again elsewhere.
    c.push("jobs/long.yaml", job("long", engine=True, command=SERVE))
    first = wait_for(lambda: next(iter(c.running("long")), None), timeout=30, interval=0.3, what="job running")
    c.daemons[first].kill(9)
    remove_node_containers(first)
    second = wait_for(lambda: next(iter(c.running("long")), None), timeout=5 + 2 + 20, interval=0.3,
                      what="job rerun on another node after the timeout")  # fmt: skip
    assert second != first
