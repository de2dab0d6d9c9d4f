"""The Service data path: one nftables table per node, DNAT from virtual IPs and nodePorts to endpoints.

Laid out as kube-proxy's nftables mode lays it out: a verdict map from (virtual IP, protocol,
port) and one from (protocol, nodePort) jump to a chain per Service port, which picks an
endpoint chain with ``numgen random`` (or ``jhash ip saddr`` for ClientIP affinity); each
endpoint chain DNATs to one address:port. A Service port without endpoints is rejected at
once instead of timing out. The whole table is replaced in one ``nft -f`` transaction, so
an update never leaves a half-written table, and established connections keep their
conntrack NAT binding across it. The table is named after the node, so several nodes on
one host (one kernel) never touch each other's rules.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops.model import Service
from gitops.services.allocate import port_key

NFT = "nft"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]{1,40}\Z")


@dataclass(frozen=True, order=True)
class Backend:
    """One endpoint a Service port forwards to: an address and port reachable from this node."""

    address: str
    port: int
    # An endpoint on this node: its container's address with its network's prefix ("172.17.0.2/16") and port.
    container: str = ""
    container_port: int = 0


class NftError(Exception):
    """``nft`` refused a ruleset or could not run; the message is its own."""


def table_name(node: str) -> str:
    """The node's table: ``gitops-<node>``, with a digest where the node name is no nftables identifier."""
    if _IDENTIFIER.match(node):
        return f"gitops-{node}"
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", node)[:24]
    return f"gitops-{cleaned}-{hashlib.sha256(node.encode()).hexdigest()[:8]}"


def render(
    node: str,
    services: Sequence[Service],
    endpoints: Mapping[str, Sequence[Backend]],
    dns: tuple[str, Backend] | None = None,
    replicas: Mapping[str, Sequence[tuple[str, int, Backend]]] | None = None,
) -> str:
    """The ``nft -f`` script that replaces the node's table with rules for ``services``.

    ``endpoints`` maps ``allocate.port_key`` to the backends of that Service port; a port
    missing from it has none. Headless and ExternalName Services have no rules (DNS only).
    ``dns`` forwards a virtual IP's port 53 (UDP and TCP) to the node's DNS server. ``replicas`` maps the
    virtual IP of a headless Service's replica to its ports: (protocol, container port, backend) each.
    """
    table = table_name(node)
    vips: list[str] = []
    node_ports: list[str] = []
    no_endpoints: list[str] = []
    chains: list[str] = []
    for service in sorted(services, key=lambda s: s.key):
        if service.type == "ExternalName" or service.headless:
            continue
        for index, port in enumerate(service.ports):
            proto = port.protocol.lower()
            backends = sorted(set(endpoints.get(port_key(service, port), ())))
            chain = f"svc-{service.namespace}-{service.name}-{index}"
            vip = f"{service.cluster_ip} . {proto} . {port.port}"
            if not backends:
                no_endpoints.append(vip)
                if port.node_port is not None:
                    no_endpoints.append(f"0.0.0.0/0 . {proto} . {port.node_port}")
                continue
            vips.append(f"{vip} : goto {chain}")
            if port.node_port is not None:
                node_ports.append(f"{proto} . {port.node_port} : goto {chain}")
            pick = "jhash ip saddr" if service.session_affinity == "ClientIP" else "numgen random"
            targets = ", ".join(f"{i} : goto {chain}-{i}" for i in range(len(backends)))
            chains.append(f"  chain {chain} {{\n    {pick} mod {len(backends)} vmap {{ {targets} }}\n  }}")
            for i, backend in enumerate(backends):
                rules = "".join(f"    {rule}\n" for rule in _endpoint_rules(backend, proto))
                chains.append(f"  chain {chain}-{i} {{\n{rules}  }}")
    for n, (ip, port_list) in enumerate(sorted((replicas or {}).items())):
        for proto, number, backend in sorted(port_list):
            chain = f"replica-{n}-{proto}-{number}"
            vips.append(f"{ip} . {proto} . {number} : goto {chain}")
            rules = "".join(f"    {rule}\n" for rule in _endpoint_rules(backend, proto))
            chains.append(f"  chain {chain} {{\n{rules}  }}")
    if dns is not None:
        vip, server = dns
        vips += [f"{vip} . udp . 53 : goto dns", f"{vip} . tcp . 53 : goto dns"]
        chains.append(
            "  chain dns {\n"
            + "".join(f"    meta l4proto {p} dnat to {server.address}:{server.port}\n" for p in ("udp", "tcp"))
            + "  }"
        )
    return "\n".join(
        [
            # Declaring then deleting the table makes the replacement one transaction even when it is new.
            f"table ip {table}",
            f"delete table ip {table}",
            f"table ip {table} {{",
            _map("service-ips", "ipv4_addr . inet_proto . inet_service : verdict", vips),
            _map("service-nodeports", "inet_proto . inet_service : verdict", node_ports),
            _interval_set("no-endpoints", "ipv4_addr . inet_proto . inet_service", no_endpoints),
            "  chain services {",
            "    ip daddr . meta l4proto . th dport vmap @service-ips",
            "    fib daddr type local meta l4proto . th dport vmap @service-nodeports",
            "  }",
            _hook("prerouting", "nat", "prerouting", "-100", "jump services"),
            _hook("output", "nat", "output", "-100", "jump services"),
            _hook("masquerade-marked", "nat", "postrouting", "100", _MASQUERADE),
            _hook("reject-forward", "filter", "forward", "-10", _REJECT),
            _hook("reject-output", "filter", "output", "-10", _REJECT),
            _hook("reject-input", "filter", "input", "-10", _REJECT_LOCAL),
            *chains,
            "}",
            "",
        ]
    )


# The packet mark bit of connections to masquerade (kube-proxy's 0x4000 is left to kube-proxy).
_MARK = "0x00008000"
_MASQUERADE = f"meta mark & {_MARK} != 0 meta mark set meta mark and 0xffff7fff masquerade"
_REJECT = "ip daddr . meta l4proto . th dport @no-endpoints reject"
_REJECT_LOCAL = "fib daddr type local ip daddr . meta l4proto . th dport @no-endpoints reject"


def _endpoint_rules(backend: Backend, proto: str) -> list[str]:
    """DNAT to one endpoint: a remote one at its node's published port, one of this node's at its container.

    Reaching this node's container by its own address skips docker-proxy, which serves the node address for
    locally delivered packets (a connection is NATed once, so Docker's DNAT no longer applies after ours).
    A client on the container's own network is masqueraded: without br_netfilter the container would answer
    it straight across the bridge, from an address it never called. The container calling its own Service
    (hairpin) keeps the published port: br_netfilter bridges a DNATed packet whose new destination is on the
    same bridge, and a bridge sends nothing back out of the port it came in on unless Docker set hairpin
    mode (only with ``--userland-proxy=false``). A client on another Docker network keeps it too: Docker
    isolates its networks from each other.
    """
    published = f"meta l4proto {proto} dnat to {backend.address}:{backend.port}"
    if not backend.container:
        return [_counter(backend), published]
    network = ipaddress.IPv4Interface(backend.container)
    direct = f"meta l4proto {proto} dnat to {network.ip}:{backend.container_port}"
    return [
        _counter(backend),
        f"ip saddr {network.ip} {published}",
        f"ip saddr {network.network} meta mark set meta mark or {_MARK} {direct}",
        f'meta iifkind "bridge" {published}',
        direct,
    ]


_COUNTER = "endpoint "


def _counter(backend: Backend) -> str:
    """A rule counting the packets that enter an endpoint chain: in a nat chain, each connection's first only."""
    return f'counter comment "{_COUNTER}{backend.address}:{backend.port}"'


def counters(listing: str) -> dict[Backend, int]:
    """New connections per endpoint so far, from ``nft -j list table`` output; ValueError if it is not one."""
    found: dict[Backend, int] = {}
    try:
        for item in json.loads(listing)["nftables"]:
            rule: dict[str, Any] = item.get("rule") or {}
            comment = rule.get("comment")
            if not isinstance(comment, str) or not comment.startswith(_COUNTER):
                continue
            address, _, port = comment.removeprefix(_COUNTER).rpartition(":")
            packets = sum(int(e["counter"]["packets"]) for e in rule["expr"] if "counter" in e)
            backend = Backend(address, int(port))
            # One endpoint may sit behind several Service ports: its connections add up.
            found[backend] = found.get(backend, 0) + packets
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"unreadable nft listing: {exc!r}") from None
    return found


def read_counters(node: str, nft: str = NFT) -> dict[Backend, int]:
    """The node's endpoint counters (``counters``) in one ``nft -j list table``; NftError if nft fails."""
    listing = _run([nft, "-j", "list", "table", "ip", table_name(node)], "")
    try:
        return counters(listing)
    except ValueError as exc:
        raise NftError(str(exc)) from None


def apply(script: str, nft: str = NFT) -> None:
    """Run ``script`` as one ``nft -f`` transaction; NftError with nft's message if it is refused."""
    _run([nft, "-f", "-"], script)


def remove(node: str, nft: str = NFT) -> None:
    """Delete the node's table and every rule in it, if it exists."""
    table = table_name(node)
    _run([nft, "-f", "-"], f"table ip {table}\ndelete table ip {table}\n")


def _run(argv: list[str], script: str) -> str:
    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NftError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise NftError(done.stderr.strip() or f"{argv[0]} exited with {done.returncode}")
    return done.stdout


def _map(name: str, type_: str, elements: list[str]) -> str:
    body = f"    elements = {{ {', '.join(elements)} }}\n" if elements else ""
    return f"  map {name} {{\n    type {type_}\n{body}  }}"


def _interval_set(name: str, type_: str, elements: list[str]) -> str:
    body = f"    elements = {{ {', '.join(elements)} }}\n" if elements else ""
    return f"  set {name} {{\n    type {type_}\n    flags interval\n{body}  }}"


def _hook(name: str, kind: str, hook: str, priority: str, rule: str) -> str:
    return f"  chain {name} {{\n    type {kind} hook {hook} priority {priority}; policy accept;\n    {rule}\n  }}"
