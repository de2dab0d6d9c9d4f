"""Services with real daemons: a managed client calls http://backend/ by name and reaches replicas on several nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gitops.nodefacts import host_ip
from gitops.services import nft
from gitops.services.dns import dns_ip, search_domains
from tests.builders import TEST_IMAGE, deployment, service
from tests.helpers import DOCKER_HOST, ROOT, DaemonProcess, Repo, remove_node_containers, status_of, wait_for
from tests.integration.test_services import BACKEND

CLIENT = deployment(
    "client",
    1,
    engine=True,
    command=["sh", "-c", 'while true; do echo "got $(wget -qO- http://backend/ || echo fail)"; sleep 0.2; done'],
)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[tuple[Repo, list[DaemonProcess]]]:
    prefix = "e" + uuid.uuid4().hex[:6]
    repo = Repo(tmp_path / "repo")
    repo.put(
        "cluster.yaml", "apiVersion: gitops/v1\nkind: Cluster\nspec: {heartbeatSeconds: 1, nodeTimeoutSeconds: 3}\n"
    )
    repo.put("backend.yaml", BACKEND)
    repo.put("svc.yaml", service("backend", "type: NodePort\n", ports="[{port: 80, targetPort: http}]"))
    # In the first revision too: its pod starts in the pass that first serves the names.
    repo.put("client.yaml", CLIENT)
    procs = [
        DaemonProcess(
            str(repo.path),
            f"{prefix}-{i}",
            tmp_path / f"state-{i}",
            tmp_path / f"{i}.log",
            interval=1,
            extra_args=["--address", host_ip()],
        ).start()
        for i in (1, 2, 3)
    ]
    yield repo, procs
    for d in procs:
        if d.alive():
            d.kill(15)
    for i in (1, 2, 3):
        node = f"{prefix}-{i}"
        nft.remove(node)
        remove_node_containers(node)


def test_a_client_reaches_backend_replicas_on_several_nodes_by_name_and_a_node_port_answers(
    daemons: tuple[Repo, list[DaemonProcess]],
) -> None:
    repo, procs = daemons
    nodes = [d.args[d.args.index("--node") + 1] for d in procs]

    def ready_backends() -> dict[str, str]:
        """Node of each ready backend, by hostname (its container id's first 12 characters)."""
        rows = [(n, r) for n in nodes for r in status_of(repo.path, n).get("workloads", []) if r["name"] == "backend"]
        return {r["container"][:12]: n for n, r in rows if r["state"] == "ready" and r.get("ports")}

    wait_for(lambda: len(ready_backends()) == 4, timeout=60, interval=0.5, what="4 ready backends")
    engine = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        owner = ready_backends()
        assert len(set(owner.values())) >= 2, owner

        def answers() -> list[str]:
            found = engine.containers.list(filters={"label": "gitops.name=client"})
            mine = [c for c in found if c.labels["gitops.node"] in nodes]
            if not mine:
                return []
            lines = mine[0].logs().decode().split("\n")
            return [line.removeprefix("got ") for line in lines if line.startswith("got ") and line != "got fail"]

        # Every node serves the same endpoints once it has read its peers' records.
        every_node = set(owner.values())
        wait_for(lambda: {owner.get(a) for a in answers()[-20:]} >= every_node, 40, 0.5, "answers from every node")
        assert set(answers()[-20:]) <= set(owner)  # earlier ones may come from replicas placed while nodes joined

        node_port = _node_port(repo)
        out = engine.containers.run(TEST_IMAGE, ["wget", "-qO-", f"http://{host_ip()}:{node_port}/"], remove=True)
        assert out.decode().strip() in owner

        # A Service added after the client started resolves from the client, without a restart.
        (client,) = [c for c in engine.containers.list(filters={"label": "gitops.name=client"})
                     if c.labels["gitops.node"] in nodes]  # fmt: skip
        added = time.monotonic()
        repo.put("late.yaml", service("late", selector="app: backend", ports="[{port: 8000, targetPort: http}]"))
        wait_for(lambda: client.exec_run(["wget", "-qO-", "http://late:8000/"]).exit_code == 0, 30, 0.2, "late")
        # Two intervals is the goal (1 s each here); the bound leaves room for a loaded CI machine.
        print(f"a Service added after the client resolved and answered in {time.monotonic() - added:.1f}s")
        assert time.monotonic() - added < 10

        # A readiness-gated rolling update and a scale-down under load: each old container drains before SIGTERM.
        load = engine.containers.run(TEST_IMAGE, ["sh", "-c", LOAD], detach=True, labels={LOAD_LABEL: "1"}, **RESOLVER)
        started = time.monotonic()
        updated = BACKEND.replace("terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 3")
        repo.put("backend.yaml", updated.replace("replicas: 4", "replicas: 3"))
        old = set(owner)
        wait_for(lambda: _rolled_over(engine, nodes, old), timeout=90, interval=0.5, what="the rollout")
        time.sleep(1)
        load.kill()
        took = time.monotonic() - started
        results = Counter(load.logs().decode().split())
        total = results["ok"] + results["fail"]
        print(f"rolling update under load: {total} requests in {took:.1f}s, {results['fail']} failed")
        assert total / took >= 20, results
        assert results["fail"] <= total * 0.001, results
    finally:
        for c in engine.containers.list(all=True, filters={"label": LOAD_LABEL}):
            c.remove(force=True)
        engine.close()


LOAD_LABEL = "gitops-test.services-load"
# Three loops of requests by name, one line each: ok or fail.
LOAD = "for i in 1 2 3; do while true; do wget -qO- http://backend/ >/dev/null 2>&1 && echo ok || echo fail; done & done; wait"  # noqa: E501
RESOLVER: dict[str, Any] = {
    "dns": [dns_ip("10.96.0.0/16")],
    "dns_search": search_domains("default"),
    "dns_opt": ["ndots:5"],
}


def _rolled_over(engine: docker.DockerClient, nodes: list[str], old: set[str]) -> bool:
    """Three backends of the new spec, and none of the old containers left."""
    rows = engine.api.containers(filters={"label": "gitops.name=backend"})
    mine = [r for r in rows if r["Labels"]["gitops.node"] in nodes]
    return len(mine) == 3 and not old & {r["Id"][:12] for r in mine}


def _node_port(repo: Repo) -> int:
    """The backend's nodePort, as ``gitops status`` shows it."""
    out = subprocess.run(
        [sys.executable, "-m", "gitops.cli", "status", "--repo", str(repo.path), "-o", "json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    (svc,) = json.loads(out)["services"]
    return int(svc["ports"][0]["nodePort"])


def test_when_the_node_with_most_backends_dies_every_request_succeeds_after_timeout_and_two_intervals(
    daemons: tuple[Repo, list[DaemonProcess]], tmp_path: Path
) -> None:
    repo, procs = daemons
    nodes = [d.args[d.args.index("--node") + 1] for d in procs]
    engine = docker.DockerClient(base_url=DOCKER_HOST)

    def backends() -> Counter[str]:
        rows = engine.api.containers(filters={"label": "gitops.name=backend", "status": "running"})
        return Counter(r["Labels"]["gitops.node"] for r in rows if r["Labels"]["gitops.node"] in nodes)

    def ready() -> int:
        rows = [r for n in nodes for r in status_of(repo.path, n).get("workloads", []) if r["name"] == "backend"]
        return sum(1 for r in rows if r["state"] == "ready")

    try:
        wait_for(lambda: ready() == 4, timeout=60, interval=0.5, what="4 ready backends")
        victim = backends().most_common(1)[0][0]
        index = nodes.index(victim)
        procs[index].kill(9)
        # The host dies with it: its containers, its table and its DNS server go.
        remove_node_containers(victim)
        nft.remove(victim)
        pid = int((tmp_path / f"state-{index + 1}" / "services" / "dnsmasq.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        time.sleep(3 + 2 * 1)  # node timeout + two intervals
        script = "ok=0; for i in $(seq 100); do wget -qO- http://backend/ >/dev/null && ok=$((ok+1)); done; echo $ok"
        out = engine.containers.run(TEST_IMAGE, ["sh", "-c", script], remove=True, **RESOLVER)
        assert out.decode().strip() == "100"
    finally:
        engine.close()
