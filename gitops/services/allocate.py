"""Virtual IPs and nodePorts, allocated so that every node computes the same from the repository alone.

There is no shared allocator to remember who came first, so a Service's address is a pure
function of the revision's set of Services: each key (namespace/name) tries a sequence of
slots hashed from the key (SHA-256, never Python's ``hash()``), in rounds; a slot two keys
want in the same round goes to the key that sorts first. A Service therefore keeps its
address while it exists unless another Service wanted the same slot first: a newly added one
that sorts first takes it, or the removal of the one that beat it frees its first choice.
With n Services in S slots, each added or removed Service moves about n / S others (0.15 %
for 100 Services in a /16; 4 of 900 moved when 100 of 1,000 were replaced, in the tests).
A Service that must never move pins its address
with ``spec.clusterIP`` / ``nodePort``; pinned values are placed before any hashed one.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence

from gitops.model import ManifestError, Service, ServicePort, Workload
from gitops.services.selector import selects

NODE_PORTS = range(30000, 32768)
# The first addresses of the range stay free for the cluster's own use (the network address, and
# a DNS server address at offset 10 as Kubernetes places kube-dns); the broadcast address is never used.
RESERVED_LOW = 16
_HASHED_ROUNDS = 16


def place(keys: Iterable[str], size: int, taken: Iterable[int] = ()) -> dict[str, int]:
    """Distinct slots in ``range(size)`` for ``keys``, avoiding ``taken``; keys that find none are left out."""
    used = set(taken)
    placed: dict[str, int] = {}
    waiting = sorted(set(keys))
    for round_ in range(_HASHED_ROUNDS):
        wanted: dict[int, str] = {}
        for key in waiting:  # in key order, so the first key wins a slot several want this round
            slot = _slot(key, round_, size)
            if slot not in used and slot not in wanted:
                wanted[slot] = key
        for slot, key in wanted.items():
            placed[key] = slot
            used.add(slot)
        waiting = [key for key in waiting if key not in placed]
        if not waiting:
            return placed
    # A nearly full range: scan upward from each key's first slot rather than hash forever.
    for key in waiting:
        if len(used) >= size:
            break
        slot = _slot(key, 0, size)
        while slot in used:
            slot = (slot + 1) % size
        placed[key] = slot
        used.add(slot)
    return placed


def allocate(services: Sequence[Service], cidr: str) -> tuple[list[Service], list[ManifestError]]:
    """``services`` with their virtual IPs and nodePorts filled in; those that get none are left out, with errors."""
    problems: list[tuple[str, ManifestError]] = []
    network = ipaddress.IPv4Network(cidr)
    ips = _virtual_ips([s for s in services if s.type != "ExternalName" and not s.headless], network, problems)
    node_ports = _node_ports([s for s in services if s.type == "NodePort"], problems)
    bad = {key for key, _ in problems}
    out = []
    for service in services:
        if service.key in bad:
            continue
        ports = tuple(p.model_copy(update={"node_port": node_ports.get(port_key(service, p))}) for p in service.ports)
        out.append(service.model_copy(update={"cluster_ip": ips.get(service.key, service.cluster_ip), "ports": ports}))
    return out, [error for _, error in problems]


def replica_name(workload: Workload, replica: int) -> str:
    """A replica's name under a headless Service: a StatefulSet's ordinal name (``web-0``), likewise for the rest."""
    return f"{workload.name}-{replica}"


def with_endpoint_ips(services: Sequence[Service], workloads: Sequence[Workload], cidr: str) -> list[Service]:
    """``services`` with a virtual IP for each replica each headless one selects, from the addresses they left free.

    Placed after every Service's own address, so replicas coming and going never move a Service; among
    themselves they follow the same rules, keyed ``namespace/Service/name/replica-name``. A replica that
    finds no address left has none (its name does not resolve).
    """
    network = ipaddress.IPv4Network(cidr)
    base, size = int(network.network_address) + RESERVED_LOW, network.num_addresses - RESERVED_LOW - 1
    taken = [int(ipaddress.IPv4Address(s.cluster_ip)) - base for s in services if s.cluster_ip not in ("", "None")]
    names: dict[str, list[str]] = {}
    for service in services:
        if service.headless:
            selected = [
                w for w in workloads if w.namespace == service.namespace and selects(service.selector, w.pod_labels)
            ]
            names[service.key] = sorted({replica_name(w, i) for w in selected for i in range(w.replicas)})
    placed = place((f"{key}/{n}" for key, found in names.items() for n in found), size, taken)
    return [
        s.model_copy(
            update={
                "endpoint_ips": {
                    n: str(ipaddress.IPv4Address(base + placed[f"{s.key}/{n}"]))
                    for n in names[s.key]
                    if f"{s.key}/{n}" in placed
                }
            }
        )
        if s.key in names
        else s
        for s in services
    ]


def _virtual_ips(
    services: Sequence[Service], network: ipaddress.IPv4Network, problems: list[tuple[str, ManifestError]]
) -> dict[str, str]:
    base, size = int(network.network_address) + RESERVED_LOW, network.num_addresses - RESERVED_LOW - 1
    first, last = ipaddress.IPv4Address(base), ipaddress.IPv4Address(base + size - 1)
    pinned: dict[str, tuple[int, Service, str]] = {}
    for service in services:
        if not service.cluster_ip:
            continue
        offset = int(ipaddress.IPv4Address(service.cluster_ip)) - base
        if 0 <= offset < size:
            pinned[service.key] = (offset, service, "spec.clusterIP")
        else:
            message = f"clusterIP {service.cluster_ip} is outside the service range {first}-{last}"
            hint = f"use an address from {first} to {last} (serviceCidr {network}), or remove clusterIP"
            problems.append((service.key, _error(service, "spec.clusterIP", message, hint)))
    _pinned_twice(pinned, "clusterIP", problems)
    taken = [offset for offset, _, _ in pinned.values()]
    hashed = place((s.key for s in services if not s.cluster_ip), size, taken)
    for service in services:
        if not service.cluster_ip and service.key not in hashed:
            message = f"no virtual IP is left in serviceCidr {network}"
            problems.append(
                (service.key, _error(service, "spec", message, "widen serviceCidr in the Cluster document"))
            )
    offsets = {key: offset for key, (offset, _, _) in pinned.items()} | hashed
    return {key: str(ipaddress.IPv4Address(base + offset)) for key, offset in offsets.items()}


def _node_ports(services: Sequence[Service], problems: list[tuple[str, ManifestError]]) -> dict[str, int]:
    pinned: dict[str, tuple[int, Service, str]] = {}
    hashed_keys: dict[str, tuple[Service, int]] = {}
    for service in services:
        for index, port in enumerate(service.ports):
            key = port_key(service, port)
            if port.node_port is None:
                hashed_keys[key] = (service, index)
            else:
                pinned[key] = (port.node_port - NODE_PORTS.start, service, f"spec.ports[{index}].nodePort")
    _pinned_twice(pinned, "nodePort", problems)
    hashed = place(hashed_keys, len(NODE_PORTS), [slot for slot, _, _ in pinned.values()])
    for key, (service, index) in hashed_keys.items():
        if key not in hashed:
            message = f"no nodePort is left in {NODE_PORTS.start}-{NODE_PORTS.stop - 1}"
            hint = "use type ClusterIP for Services that need no port on the nodes"
            problems.append((service.key, _error(service, f"spec.ports[{index}]", message, hint)))
    slots = {key: slot for key, (slot, _, _) in pinned.items()} | hashed
    return {key: NODE_PORTS.start + slot for key, slot in slots.items()}


def _pinned_twice(
    pinned: dict[str, tuple[int, Service, str]], what: str, problems: list[tuple[str, ManifestError]]
) -> None:
    """Errors for values two Services pin, and those keys dropped from ``pinned`` (neither gets it)."""
    holders: dict[int, list[str]] = {}
    for key, (slot, _, _) in pinned.items():
        holders.setdefault(slot, []).append(key)
    for keys in holders.values():
        if len(keys) < 2:
            continue
        places = ", ".join(f"{pinned[k][1].file}:{pinned[k][1].line}" for k in keys)
        for key in keys:
            _, service, field = pinned.pop(key)
            problems.append(
                (
                    service.key,
                    _error(service, field, f"{what} is set by more than one Service ({places})", "change one of them"),
                )
            )


def port_key(service: Service, port: ServicePort) -> str:
    """``namespace/Service/name:port/protocol``: one port of one Service."""
    return f"{service.key}:{port.port}/{port.protocol}"


def _slot(key: str, round_: int, size: int) -> int:
    digest = hashlib.sha256(f"{key}#{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def _error(service: Service, field: str, message: str, hint: str) -> ManifestError:
    return ManifestError(
        file=service.file, line=service.line, field=field, message=f"{service.key}: {message}", hint=hint
    )
