"""Builders for placement tests."""

from __future__ import annotations

from gitops.identity import ReplicaId
from gitops.model import ContainerSpec, PodSpec, PortSpec, Workload, WorkloadKind
from gitops.placement import Assignment, NodeInfo


def wl(
    name: str,
    replicas: int = 1,
    cpu: int = 100,
    mem: int = 64,
    gpus: int = 0,
    kind: WorkloadKind = "Deployment",
    selector: dict[str, str] | None = None,
    host_port: int | None = None,
) -> Workload:
    """A one-container workload with the given requests (memory in MiB)."""
    ports = (PortSpec(container_port=80, host_port=host_port),) if host_port else ()
    container = ContainerSpec(
        name="c",
        image="i",
        cpu_request_millis=cpu,
        memory_request_bytes=mem * 1024 * 1024,
        gpus=gpus,
        ports=ports,
    )
    return Workload(
        kind=kind,
        name=name,
        file="x.yaml",
        replicas=replicas,
        pod=PodSpec(containers=(container,)),
        node_selector=selector or {},
    )


def node(
    name: str,
    cpu: int = 4000,
    mem: int = 8192,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    cordoned: bool = False,
) -> NodeInfo:
    """A node with the given capacity."""
    return NodeInfo(
        name=name,
        labels=labels or {},
        cpu_millis=cpu,
        memory_mib=mem,
        gpus=tuple(f"GPU-{name}-{i}" for i in range(gpus)),
        cordoned=cordoned,
    )


def owners(a: Assignment, daemons: frozenset[str] = frozenset()) -> dict[ReplicaId, str]:
    """Replica -> node for everything but DaemonSets, as nodes report it in status."""
    return a.owners(daemons)
