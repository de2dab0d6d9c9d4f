"""The nftables data path on this kernel: container traffic to a virtual IP or nodePort reaches the endpoints."""

from __future__ import annotations

import http.client
import socket
import struct
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from gitops.model import Service, ServicePort
from gitops.nodefacts import host_ip
from gitops.services import nft
from gitops.services.allocate import port_key
from gitops.services.dns import DnsServer
from tests.builders import TEST_IMAGE
from tests.helpers import DOCKER_HOST

pytestmark = pytest.mark.usefixtures("docker_engine")

LABEL = "gitops.test=service-dataplane"
HTTPD = ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
WEB = Service(
    name="web",
    file="web.yaml",
    type="NodePort",
    cluster_ip="10.96.200.7",
    selector={"app": "web"},
    ports=(ServicePort(port=80, target_port=8080, node_port=31999),),
)
EMPTY = Service(
    name="empty",
    file="e.yaml",
    cluster_ip="10.96.200.8",
    selector={"app": "x"},
    ports=(ServicePort(port=80, target_port=80),),
)


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=DOCKER_HOST)
    yield c
    for leftover in c.containers.list(all=True, filters={"label": LABEL}):
        leftover.remove(force=True)
    c.close()


@pytest.fixture
def node() -> Iterator[str]:
    name = "svc-" + uuid.uuid4().hex[:8]
    yield name
    nft.remove(name)


def backends(client: docker.DockerClient, count: int) -> dict[str, nft.Backend]:
    """``count`` httpd containers answering with their hostname, by hostname."""
    out = {}
    for _ in range(count):
        c = client.containers.run(TEST_IMAGE, HTTPD, detach=True, labels=dict([LABEL.split("=")]))
        c.reload()
        out[c.attrs["Config"]["Hostname"]] = nft.Backend(c.attrs["NetworkSettings"]["IPAddress"], 8080)
    return out


def resolve(name: str, port: int) -> str:
    """The last A record 127.0.0.1:``port`` answers for ``name`` (one plain UDP query)."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(query, ("127.0.0.1", port))
        return socket.inet_ntoa(sock.recv(512)[-4:])


def fetch_many(client: docker.DockerClient, url: str, times: int) -> list[str]:
    """What ``times`` wget calls from one client container answer (a line per call, ``fail`` for an error)."""
    script = f"for i in $(seq {times}); do wget -qO- {url} 2>/dev/null || echo fail; done"
    out = client.containers.run(TEST_IMAGE, ["sh", "-c", script], remove=True, labels=dict([LABEL.split("=")]))
    return out.decode().split()


def test_virtual_ip_and_node_port_spread_over_endpoints_and_follow_updates(
    client: docker.DockerClient, node: str
) -> None:
    found = backends(client, 2)
    key = port_key(WEB, WEB.ports[0])
    nft.apply(nft.render(node, [WEB, EMPTY], {key: list(found.values())}))
    time.sleep(0.3)  # httpd binds its port
    answers = Counter(fetch_many(client, "http://10.96.200.7/", 30))
    assert set(answers) == set(found), answers
    gateway = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    assert set(fetch_many(client, f"http://{gateway}:31999/", 4)) <= set(found)

    # Endpoints change: the whole table is replaced at once and only the remaining endpoint answers.
    kept = sorted(found)[0]
    nft.apply(nft.render(node, [WEB, EMPTY], {key: [found[kept]]}))
    assert set(fetch_many(client, "http://10.96.200.7/", 10)) == {kept}

    # A Service port without endpoints is rejected at once, not left to time out.
    started = time.monotonic()
    assert fetch_many(client, "http://10.96.200.8/", 1) == ["fail"]
    assert time.monotonic() - started < 5

    nft.remove(node)
    listed = subprocess.run(["nft", "list", "table", "ip", nft.table_name(node)], capture_output=True, check=False)
    assert listed.returncode != 0


def test_this_nodes_endpoint_answers_at_its_container_from_its_network_itself_the_host_and_other_networks(
    client: docker.DockerClient, node: str
) -> None:
    labels = dict([LABEL.split("=")])
    c = client.containers.run(TEST_IMAGE, HTTPD, detach=True, labels=labels, ports={"8080/tcp": (host_ip(),)})
    c.reload()
    settings = c.attrs["NetworkSettings"]
    published = int(settings["Ports"]["8080/tcp"][0]["HostPort"])
    local = nft.Backend(host_ip(), published, f"{settings['IPAddress']}/{settings['IPPrefixLen']}", 8080)
    nft.apply(nft.render(node, [WEB], {port_key(WEB, WEB.ports[0]): [local]}))
    name = c.attrs["Config"]["Hostname"]
    time.sleep(0.3)  # httpd binds its port
    assert fetch_many(client, "http://10.96.200.7/", 3) == [name] * 3
    # Hairpin: the endpoint calls its own Service.
    assert c.exec_run(["wget", "-qO-", "http://10.96.200.7/"]).output.decode().split() == [name]
    conn = http.client.HTTPConnection("10.96.200.7", 80, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read().decode().split() == [name]
    conn.close()
    # A client on another Docker network, which Docker isolates from the container's: via the published port.
    other = client.networks.create("gitops-test-" + node, labels=labels)
    try:
        script = "wget -qO- http://10.96.200.7/ || echo fail"
        out = client.containers.run(TEST_IMAGE, ["sh", "-c", script], remove=True, network=other.name, labels=labels)
        assert out.decode().split() == [name]
    finally:
        other.remove()


def test_a_refused_ruleset_raises_with_nfts_message_and_keeps_the_old_table(node: str) -> None:
    nft.apply(nft.render(node, [WEB], {}))
    with pytest.raises(nft.NftError, match="Error"):
        nft.apply(nft.render(node, [WEB], {}).replace("numgen", "nosuchexpr").replace("flags interval", "flags bogus"))
    listed = subprocess.run(["nft", "list", "table", "ip", nft.table_name(node)], capture_output=True, text=True)
    assert "10.96.200.7 . tcp . 80" in listed.stdout


def test_a_dns_server_answers_service_names_and_replaces_one_a_killed_daemon_left(tmp_path: Path) -> None:
    first = DnsServer("dns-test", "127.0.0.1", tmp_path)
    first.serve([WEB])
    orphan = first._process
    assert orphan is not None
    # A new daemon of the same node (the old one was SIGKILLed and never stopped its dnsmasq).
    second = DnsServer("dns-test", "127.0.0.1", tmp_path)
    try:
        second.serve([WEB, EMPTY])
        assert orphan.wait(timeout=5) is not None
        assert resolve("empty.default.svc.cluster.local", second.port) == "10.96.200.8"
    finally:
        second.stop()


def test_each_endpoint_chain_counts_the_connections_it_forwards(node: str) -> None:
    """The autoscaler's requests_per_second source: one count per new connection, per endpoint, read in one call."""
    with socket.create_server(("127.0.0.1", 0)) as first, socket.create_server(("127.0.0.1", 0)) as second:
        servers = {nft.Backend("127.0.0.1", s.getsockname()[1]): s for s in (first, second)}
        service = Service(
            name="counted",
            file="c.yaml",
            cluster_ip="10.96.200.9",
            selector={"app": "counted"},
            ports=(ServicePort(port=80, target_port=80),),
        )
        nft.apply(nft.render(node, [service], {port_key(service, service.ports[0]): list(servers)}))
        assert nft.read_counters(node) == dict.fromkeys(servers, 0)
        for _ in range(10):
            # Locally generated traffic meets the output hook's DNAT; the kernel completes each connection with
            # one endpoint (queued in its backlog).
            with socket.create_connection(("10.96.200.9", 80), timeout=3):
                pass
        counted = nft.read_counters(node)
        assert sum(counted.values()) == 10 and set(counted) == set(servers)
