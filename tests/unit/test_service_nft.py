"""Rendering a node's nftables table for its Services (applied on a real kernel in tests/integration)."""

from __future__ import annotations

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
