"""Service endpoints from the status records: ready replicas on live nodes, at their node's published ports.

Every node reads the same records, so every node serves the same endpoints (a pass apart).
A replica is an endpoint of a Service port while its row is ``ready`` (``running`` too under
``publishNotReadyAddresses``), not terminating, on a live node that published an address,
and its workload's pod labels match the selector in the Service's namespace. The target is
the replica's container port (``targetPort`` by number, or by the name of a declared
container port) as published on the node's address; for this node's own replicas, also the
container's address on its Docker network, which the data path prefers (``nft.Backend``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence

from gitops.identity import ReplicaId
from gitops.model import Service, ServicePort, Workload
from gitops.services.allocate import port_key, replica_name
from gitops.services.nft import Backend
from gitops.services.selector import selects
from gitops.states import Reason, State
from gitops.status import NodeStatus, PortStatus, ReplicaStatus


def endpoints(
    services: Sequence[Service],
    workloads: Sequence[Workload],
    reports: Mapping[str, NodeStatus],
    live: Collection[str],
    node: str = "",
    local: Mapping[ReplicaId, str] | None = None,
) -> dict[str, list[Backend]]:
    """Backends of each Service port (by ``allocate.port_key``), in node and row order.

    ``local`` holds the container networks (``Observed.network``) of the replicas of ``node``, this node.
    """
    out: dict[str, list[Backend]] = {}
    for service, workload, row, address, network in _serving(services, workloads, reports, live, node, local):
        for port in service.ports:
            published = _published(row, workload, port)
            if published is not None:
                out.setdefault(port_key(service, port), []).append(_backend(address, published, network))
    return out


def replica_endpoints(
    services: Sequence[Service],
    workloads: Sequence[Workload],
    reports: Mapping[str, NodeStatus],
    live: Collection[str],
    node: str = "",
    local: Mapping[ReplicaId, str] | None = None,
) -> dict[str, list[tuple[str, int, Backend]]]:
    """Serving replicas of headless Services by their own virtual IP: (protocol, container port, backend) each.

    Like a pod IP, a replica's address reaches every container port it publishes.
    """
    out: dict[str, list[tuple[str, int, Backend]]] = {}
    headless = [s for s in services if s.headless]
    for service, workload, row, address, network in _serving(headless, workloads, reports, live, node, local):
        ip = service.endpoint_ips.get(replica_name(workload, row.replica))
        if ip is not None and ip not in out:
            out[ip] = [(p.protocol, p.container_port, _backend(address, p, network)) for p in row.ports or ()]
    return out


def _serving(
    services: Sequence[Service],
    workloads: Sequence[Workload],
    reports: Mapping[str, NodeStatus],
    live: Collection[str],
    node: str,
    local: Mapping[ReplicaId, str] | None,
) -> Iterator[tuple[Service, Workload, ReplicaStatus, str, str]]:
    """(Service, workload, row, node address, container network on this node or "") of each serving replica."""
    by_key = {w.key: w for w in workloads}
    by_namespace: dict[str, list[Service]] = {}
    for service in services:
        if service.type != "ExternalName":
            by_namespace.setdefault(service.namespace, []).append(service)
    for name in sorted(live):
        report = reports.get(name)
        networks = (local or {}) if name == node else {}
        if report is None or not report.address:
            continue
        for row in report.workloads:
            workload = by_key.get(row.key)
            if workload is None or not row.ports or row.reason == Reason.TERMINATING:
                continue
            for service in by_namespace.get(workload.namespace, ()):
                if _serves(row, service) and selects(service.selector, workload.pod_labels):
                    yield service, workload, row, report.address, networks.get(row.rid, "")


def _backend(address: str, published: PortStatus, network: str) -> Backend:
    if network:
        return Backend(address, published.host_port, network, published.container_port)
    return Backend(address, published.host_port)


def _serves(row: ReplicaStatus, service: Service) -> bool:
    return row.state == State.READY or (service.publish_not_ready and row.state == State.RUNNING)


def _published(row: ReplicaStatus, workload: Workload, port: ServicePort) -> PortStatus | None:
    target = port.target_port if isinstance(port.target_port, int) else workload.port_names.get(port.target_port)
    protocol = port.protocol.lower()
    return next((p for p in row.ports or () if p.container_port == target and p.protocol == protocol), None)
