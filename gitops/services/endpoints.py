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

from collections.abc import Collection, Mapping, Sequence

from gitops.identity import ReplicaId
from gitops.model import Service, ServicePort, Workload
from gitops.services.allocate import port_key
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
    by_key = {w.key: w for w in workloads}
    by_namespace: dict[str, list[Service]] = {}
    for service in services:
        if service.type != "ExternalName":
            by_namespace.setdefault(service.namespace, []).append(service)
    out: dict[str, list[Backend]] = {}
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
                if not _serves(row, service) or not selects(service.selector, workload.pod_labels):
                    continue
                for port in service.ports:
                    published = _published(row, workload, port)
                    if published is not None:
                        backend = Backend(report.address, published.host_port)
                        if network := networks.get(row.rid, ""):
                            backend = Backend(backend.address, backend.port, network, published.container_port)
                        out.setdefault(port_key(service, port), []).append(backend)
    return out


def _serves(row: ReplicaStatus, service: Service) -> bool:
    return row.state == State.READY or (service.publish_not_ready and row.state == State.RUNNING)


def _published(row: ReplicaStatus, workload: Workload, port: ServicePort) -> PortStatus | None:
    target = port.target_port if isinstance(port.target_port, int) else workload.port_names.get(port.target_port)
    protocol = port.protocol.lower()
    return next((p for p in row.ports or () if p.container_port == target and p.protocol == protocol), None)
