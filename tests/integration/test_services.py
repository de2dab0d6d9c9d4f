"""Services across two in-process nodes on the real engine: endpoints from status, served by each node's table."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from gitops.nodefacts import host_ip
from gitops.reconcile.reconciler import Reconciler
from gitops.services import nft
from gitops.services.dns import dns_ip, search_domains
from tests.builders import TEST_IMAGE, deployment, service
from tests.helpers import DOCKER_HOST, Repo, make_reconciler, remove_node_containers, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

LABEL = "gitops.test=services"
BACKEND = deployment(
    "backend",
    4,
    engine=True,
    command=["sh", "-c", "mkdir -p /www; hostname > /www/index.html; httpd -f -p 8080 -h /www"],
    container="""\
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        """,
)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Repo, list[Reconciler]]]:
    prefix = "s" + uuid.uuid4().hex[:6]
    repo = Repo(tmp_path / "repo")
    repo.put("backend.yaml", BACKEND)
    repo.put("svc.yaml", service("backend", "type: NodePort\n", ports="[{port: 80, targetPort: http}]"))
    recs = [
        make_reconciler(str(repo.path), f"{prefix}-{i}", tmp_path / f"state-{i}", interval=1, address=host_ip())
        for i in (1, 2)
    ]
    yield repo, recs
    client = docker.DockerClient(base_url=DOCKER_HOST)
    for leftover in client.containers.list(all=True, filters={"label": LABEL}):
        leftover.remove(force=True)
    client.close()
    for rec in recs:
        rec.close()
        nft.remove(rec.node)
        remove_node_containers(rec.node)


WEB = deployment(
    "web",
    1,
    engine=True,
    command=["sh", "-c", "mkdir -p /www; hostname > /www/index.html; httpd -f -p 8080 -h /www"],
    container="ports: [{containerPort: 8080}]\n",
).replace("kind: Deployment", "kind: StatefulSet")


def fetch_many(url: str, times: int) -> list[str]:
    """What ``times`` wget calls from one client container answer (a line per call, ``fail`` for an error)."""
    client = docker.DockerClient(base_url=DOCKER_HOST)
    script = f"for i in $(seq {times}); do wget -qO- {url} 2>/dev/null || echo fail; done"
    try:
        out = client.containers.run(TEST_IMAGE, ["sh", "-c", script], remove=True, labels=dict([LABEL.split("=")]))
    finally:
        client.close()
    return out.decode().split()


def test_a_service_spreads_over_ready_replicas_on_both_nodes_by_virtual_ip_and_node_port(
    nodes: tuple[Repo, list[Reconciler]],
) -> None:
    repo, recs = nodes

    def all_ready() -> bool:
        for rec in recs:
            rec.run_pass()
        rows = [r for rec in recs for r in repo.status(rec.node).get("workloads", [])]
        return len(rows) == 4 and all(r["state"] == "ready" and r.get("ports") for r in rows)

    wait_for(all_ready, timeout=60, interval=0.5, what="4 ready backend replicas with published ports")
    # Each node programs the endpoints its peer just reported.
    (svc,) = [rec.run_pass() for rec in recs][-1].manifests.services
    assert svc.cluster_ip.startswith("10.96.")
    assert repo.status(recs[0].node)["address"] == host_ip()
    engine = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        owner = {
            c.attrs["Config"]["Hostname"]: c.labels["gitops.node"]
            for rec in recs
            for c in engine.containers.list(filters={"label": f"gitops.node={rec.node}"})
        }
    finally:
        engine.close()
    assert len(set(owner.values())) == 2, owner  # placement spread the replicas over both nodes

    answers = fetch_many(f"http://{svc.cluster_ip}/", 40)
    assert "fail" not in answers and len(set(answers)) >= 2, answers
    assert {owner[a] for a in answers} == {rec.node for rec in recs}

    node_port = svc.ports[0].node_port
    assert node_port is not None and set(fetch_many(f"http://{host_ip()}:{node_port}/", 5)) <= set(owner)

    # Names: from a container with the resolver settings the executor gives (tests/unit), for a
    # Service that exists at its start and for one added after, without a restart.
    engine = docker.DockerClient(base_url=DOCKER_HOST)
    client = engine.containers.run(
        TEST_IMAGE,
        ["sleep", "120"],
        detach=True,
        labels=dict([LABEL.split("=")]),
        dns=[dns_ip("10.96.0.0/16")],
        dns_search=search_domains("default"),
        dns_opt=["ndots:5"],
    )

    def get(url: str) -> str:
        code, out = client.exec_run(["wget", "-qO-", url])
        return out.decode().strip() if code == 0 else f"fail {code}: {out.decode()}"

    try:
        assert get("http://backend/") in owner
        assert get("http://backend.default.svc.cluster.local/") in owner
        repo.put("late.yaml", service("late", selector="app: backend", ports="[{port: 8000, targetPort: 8080}]"))
        for rec in recs:
            rec.run_pass()
        assert get("http://late:8000/") in owner

        # A StatefulSet behind a headless Service: web-0.web resolves to web-0's own virtual IP and answers.
        repo.put("web.yaml", WEB)
        repo.put("web-svc.yaml", service("web", "clusterIP: None\n", ports="[{port: 8080}]"))
        # And an ExternalName naming the backend Service: its name answers with the backend's address.
        alias = "type: ExternalName\nexternalName: backend.default.svc.cluster.local\n"
        repo.put("alias.yaml", service("alias", alias, selector="", ports=""))

        def web_0() -> str:
            for rec in recs:
                rec.run_pass()
            return get("http://web-0.web:8080/")

        wait_for(lambda: web_0() == "web-0", timeout=40, interval=0.5, what="web-0.web answering")
        out = client.exec_run(["nslookup", "web-0.web.default.svc.cluster.local"]).output
        (web,) = [s for s in recs[0].run_pass().manifests.services if s.name == "web"]
        assert web.endpoint_ips["web-0"] in out.decode(), out
        assert get("http://alias/") in owner
    finally:
        client.remove(force=True)
        engine.close()

    # A scale-down drains: the leaving replica's node takes it out of its table and publishes it Terminating,
    # and stops it only once its peer has had time to read that (service_drain_seconds: 1 + 0.1 + 2 s here).
    repo.put("backend.yaml", BACKEND.replace("replicas: 4", "replicas: 3"))
    (holder,) = [rec for rec in recs if any(r["replica"] == 3 for r in repo.status(rec.node)["workloads"])]
    peer = next(rec for rec in recs if rec is not holder)
    leaving = _backend_container(holder.node, 3)
    (row,) = [r for r in repo.status(holder.node)["workloads"] if r["name"] == "backend" and r["replica"] == 3]
    published = f"{host_ip()}:{row['ports'][0]['hostPort']}"
    started = time.monotonic()
    holder.run_pass()
    (row,) = [r for r in repo.status(holder.node)["workloads"] if r["name"] == "backend" and r["replica"] == 3]
    assert (row["reason"], row["message"]) == ("Terminating", "draining from Service endpoints for 3.1s")
    leaving.reload()
    assert leaving.status == "running" and published in _table(peer.node)
    peer.run_pass()
    assert published not in _table(peer.node)
    wait_for(lambda: holder.run_pass() and _gone(leaving), timeout=10, interval=0.3, what="the drained replica gone")
    assert time.monotonic() - started >= 3.1

    # Each node holds its own table: removing one node's leaves the other serving.
    nft.remove(recs[0].node)
    assert set(fetch_many(f"http://{svc.cluster_ip}/", 5)) <= set(owner)
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert nft.table_name(recs[1].node) in listed and nft.table_name(recs[0].node) not in listed


def _backend_container(node: str, replica: int) -> Container:
    engine = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        labels = ["gitops.name=backend", f"gitops.node={node}", f"gitops.replica={replica}"]
        (found,) = engine.containers.list(filters={"label": labels})
        return found
    finally:
        engine.close()


def _gone(container: Container) -> bool:
    try:
        container.reload()
    except docker.errors.NotFound:
        return True
    return False


def _table(node: str) -> str:
    return subprocess.run(["nft", "list", "table", "ip", nft.table_name(node)], capture_output=True, text=True).stdout
