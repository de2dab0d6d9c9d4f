"""Virtual IPs and nodePorts: distinct, identical in every process, and stable as Services come and go."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from gitops.model import Service, ServicePort
from gitops.services.allocate import NODE_PORTS, allocate, place
from tests.helpers import ROOT

CIDR = "10.96.0.0/16"


def services(count: int, node_ports: int = 0) -> list[Service]:
    return [
        Service(
            namespace=f"ns{index % 7}",
            name=f"svc{index}",
            file=f"s{index}.yaml",
            type="NodePort" if index < node_ports else "ClusterIP",
            selector={"app": f"a{index}"},
            ports=(ServicePort(port=80, target_port=8080),),
        )
        for index in range(count)
    ]


def digest(count: int, node_ports: int) -> str:
    """A digest of the allocation of ``count`` Services, ``node_ports`` of them NodePort."""
    allocated, errors = allocate(services(count, node_ports), CIDR)
    table = sorted((s.key, s.cluster_ip, s.ports[0].node_port) for s in allocated)
    return hashlib.sha256(json.dumps([table, len(errors)]).encode()).hexdigest()


def test_ten_thousand_services_get_distinct_ips_and_two_thousand_distinct_node_ports() -> None:
    allocated, errors = allocate(services(10_000, node_ports=2_000), CIDR)
    assert errors == [] and len(allocated) == 10_000
    ips = {s.cluster_ip for s in allocated}
    assert len(ips) == 10_000 and all(ip.startswith("10.96.") for ip in ips)
    assert not ips & {"10.96.0.0", "10.96.0.10", "10.96.255.255"}
    ports = [s.ports[0].node_port for s in allocated if s.type == "NodePort"]
    assert len(set(ports)) == 2_000 and all(p in NODE_PORTS for p in ports if p is not None)


def test_allocation_is_identical_across_processes_and_hash_seeds() -> None:
    here = digest(3_000, 1_000)
    code = "from tests.unit.test_service_allocation import digest; print(digest(3_000, 1_000))"
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == here, seed


def test_input_order_does_not_matter() -> None:
    forward, _ = allocate(services(500, 100), CIDR)
    backward, _ = allocate(list(reversed(services(500, 100))), CIDR)
    assert {s.key: s.cluster_ip for s in forward} == {s.key: s.cluster_ip for s in backward}


def test_services_mostly_keep_their_address_when_others_come_and_go() -> None:
    before = {s.key: s.cluster_ip for s in allocate(services(1_000), CIDR)[0]}
    after = {s.key: s.cluster_ip for s in allocate(services(1_100)[100:], CIDR)[0]}
    moved = [key for key in after if key in before and after[key] != before[key]]
    # 100 added, 100 removed: a Service moves only where a newcomer or a removed one shared its first slot.
    assert len(moved) <= 10, moved


def test_a_full_range_places_every_key_it_can_and_reports_the_rest() -> None:
    placed = place([f"k{i}" for i in range(12)], 10, taken=[3])
    assert len(placed) == 9 and sorted(placed.values()) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    narrow = "10.0.0.0/24"  # 256 - 16 reserved - broadcast = 239 addresses
    allocated, errors = allocate(services(240), narrow)
    assert len(allocated) == 239 and len(errors) == 1
    assert "no virtual IP is left in serviceCidr 10.0.0.0/24" in str(errors[0])
