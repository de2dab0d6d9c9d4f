"""Rendering a node's nftables table for its Services (applied on a real kernel in tests/integration)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gitops.model import Service, ServicePort
from gitops.services import dns, nft
from gitops.services.allocate import port_key

PORT = ServicePort(port=80, target_port=8080)


def svc(name: str, **kw: object) -> Service:
    return Service.model_validate({"name": name, "file": "s.yaml", "selector": {"app": name}, "ports": (PORT,), **kw})


def test_table_names_are_per_node_and_valid_identifiers() -> None:
    assert nft.table_name("node-1") == "gitops-node-1"
    odd = nft.table_name("Node One/\u00e4")
    assert odd.startswith("gitops-Node_One__-") and odd != nft.table_name("Node One/b")


def test_each_service_port_spreads_over_its_endpoints_and_client_ip_hashes_the_source() -> None:
    web = svc("web", cluster_ip="10.96.0.20")
    sticky = svc("sticky", cluster_ip="10.96.0.21", session_affinity="ClientIP")
    backends = [nft.Backend("10.0.0.2", 31000), nft.Backend("10.0.0.1", 31000)]
    script = nft.render("n1", [web, sticky], {port_key(web, PORT): backends, port_key(sticky, PORT): backends[:1]})
    assert script.startswith("table ip gitops-n1\ndelete table ip gitops-n1\ntable ip gitops-n1 {")
    assert "10.96.0.20 . tcp . 80 : goto svc-default-web-0" in script
    assert "numgen random mod 2 vmap { 0 : goto svc-default-web-0-0, 1 : goto svc-default-web-0-1 }" in script
    # Endpoints in a canonical order: every node renders the same table from the same status.
    assert (
        'chain svc-default-web-0-0 {\n    counter comment "endpoint 10.0.0.1:31000"\n'
        "    meta l4proto tcp dnat to 10.0.0.1:31000\n"
    ) in script
    assert "jhash ip saddr mod 1 vmap { 0 : goto svc-default-sticky-0-0 }" in script


def test_an_endpoint_on_this_node_is_reached_at_its_container_and_same_network_clients_are_masqueraded() -> None:
    web = svc("web", cluster_ip="10.96.0.20")
    local = nft.Backend("10.0.0.1", 31000, "172.17.0.5/16", 8080)
    script = nft.render("n1", [web], {port_key(web, PORT): [local]})
    rules = script.split("chain svc-default-web-0-0 {\n")[1].split("  }")[0].splitlines()
    assert [r.strip() for r in rules] == [
        # Connections to this endpoint, for the autoscaler's requests_per_second.
        'counter comment "endpoint 10.0.0.1:31000"',
        # The container calling its own Service: Docker's bridge port has no hairpin mode.
        "ip saddr 172.17.0.5 meta l4proto tcp dnat to 10.0.0.1:31000",
        # Same network: straight to the container, masqueraded so that its answer comes back through NAT.
        "ip saddr 172.17.0.0/16 meta mark set meta mark or 0x00008000 meta l4proto tcp dnat to 172.17.0.5:8080",
        # Another Docker network is isolated from the container's: the published port still reaches it.
        'meta iifkind "bridge" meta l4proto tcp dnat to 10.0.0.1:31000',
        # Host processes and other hosts: straight to the container, past docker-proxy.
        "meta l4proto tcp dnat to 172.17.0.5:8080",
    ]
    assert "type nat hook postrouting priority 100; policy accept;\n    meta mark & 0x00008000 != 0" in script


def test_headless_and_external_name_services_have_no_rules_and_empty_ports_are_rejected() -> None:
    headless = svc("db", cluster_ip="None")
    external = Service(name="mail", file="m.yaml", type="ExternalName", external_name="smtp.example.com")
    lonely = svc(
        "lonely", type="NodePort", cluster_ip="10.96.0.22", ports=(PORT.model_copy(update={"node_port": 30001}),)
    )
    script = nft.render("n1", [headless, external, lonely], {})
    assert "db" not in script and "mail" not in script
    assert "elements = { 10.96.0.22 . tcp . 80, 0.0.0.0/0 . tcp . 30001 }" in script
    assert "goto svc-" not in script


def test_the_dns_virtual_ip_forwards_to_the_nodes_dns_server_which_knows_every_virtual_ip() -> None:
    web = svc("web", cluster_ip="10.96.0.20")
    server = nft.Backend("192.0.2.1", dns.dns_port("n1"))
    script = nft.render("n1", [web], {}, (dns.dns_ip("10.96.0.0/16"), server))
    assert "10.96.0.10 . udp . 53 : goto dns, 10.96.0.10 . tcp . 53 : goto dns" in script
    assert f"meta l4proto udp dnat to 192.0.2.1:{server.port}" in script
    assert 20000 <= server.port < 30000 and server.port == dns.dns_port("n1") != dns.dns_port("n2")
    headless = svc("db", cluster_ip="None")
    assert dns.hosts([web, headless]) == ("10.96.0.20 web.default.svc.cluster.local web.default.svc web.default\n")


def test_an_external_name_answers_with_its_targets_addresses_a_services_of_the_cluster_or_looked_up() -> None:
    web = svc("web", cluster_ip="10.96.0.20")
    inside = Service(name="alias", file="a.yaml", type="ExternalName", external_name="web.default.svc.cluster.local.")
    outside = Service(name="mail", file="m.yaml", type="ExternalName", external_name="smtp.example.com")
    text = dns.hosts([web, inside, outside], resolved={"smtp.example.com": ("192.0.2.7", "192.0.2.8")})
    assert "10.96.0.20 alias.default.svc.cluster.local alias.default.svc alias.default\n" in text
    assert "192.0.2.7 mail.default.svc.cluster.local" in text and "192.0.2.8 mail.default.svc.cluster.local" in text
    # Unknown targets have no records yet: the name is answered as unknown, never forwarded.
    assert "mail" not in dns.hosts([outside])


def test_external_names_are_looked_up_in_the_background_and_again_after_the_refresh() -> None:
    names = dns.ExternalNames(refresh_s=30.0)
    try:
        found: dict[str, tuple[str, ...]] = {}
        deadline = time.monotonic() + 10
        while "localhost" not in found and time.monotonic() < deadline:
            found = names.addresses(["localhost", "no-such-name.invalid"], now=0.0)
            time.sleep(0.02)
        assert "127.0.0.1" in found["localhost"]
        time.sleep(0.5)
        assert names.addresses(["no-such-name.invalid"], now=1.0) == {"no-such-name.invalid": ()}
        assert names._asked == {"localhost": 0.0, "no-such-name.invalid": 0.0}
        names.addresses(["localhost"], now=31.0)
        assert names._asked["localhost"] == 31.0
    finally:
        names.stop()


def test_endpoint_counters_are_read_per_backend_from_a_captured_listing() -> None:
    # `nft -j list table ip gitops-pmcapture` (nftables 1.0.6) after 5 connections to a Service of two endpoints.
    listing = (Path(__file__).parent / "nft_listing.json").read_text()
    assert nft.counters(listing) == {nft.Backend("192.0.2.1", 31000): 2, nft.Backend("192.0.2.2", 31001): 3}
    # An endpoint behind two Service ports: its chains' counters add up.
    doubled = listing.replace('"endpoint 192.0.2.2:31001"', '"endpoint 192.0.2.1:31000"')
    assert nft.counters(doubled) == {nft.Backend("192.0.2.1", 31000): 5}
    for broken in ("", "{}", '{"nftables": [{"rule": {"comment": "endpoint 1.2.3.4:x", "expr": []}}]}'):
        with pytest.raises(ValueError, match="unreadable nft listing"):
            nft.counters(broken)
