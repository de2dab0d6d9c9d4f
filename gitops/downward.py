"""The downward API: what a container may read about its own pod (env[].valueFrom fieldRef, resourceFieldRef).

Values every node knows from the repository (namespace, labels, a set limit) are resolved
into the spec when it is loaded. Values that depend on the replica or the node (pod name
and uid, node name, addresses, a limit left to the node's capacity) are resolved by the
node when it creates the container, so specs, and their hashes, stay equal on every node.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from gitops.identity import ReplicaId
from gitops.manifests.quantity import parse_quantity
from gitops.model import ContainerSpec, FieldRef

# Resolved by the node at create time; the rest of the supported paths are resolved at load time.
NODE_FIELDS = frozenset(
    {
        "metadata.name",
        "metadata.uid",
        "spec.nodeName",
        "status.podIP",
        "status.podIPs",
        "status.hostIP",
        "status.hostIPs",
    }
)
POD_IP_FIELDS = frozenset({"status.podIP", "status.podIPs"})
RESOURCES = ("limits.cpu", "limits.memory", "requests.cpu", "requests.memory")
_UIDS = uuid.UUID("5e0b6a1c-8f3e-4d2a-9c71-6a7d0f1b2c3d")


# The bridge network whose fixed addresses give a pod's first container its status.podIP before it starts.
POD_NETWORK = "gitops-pods"
_ADDRESS_TRIES = 16


def reads_pod_ip(spec: ContainerSpec) -> bool:
    """Whether the container's environment holds status.podIP(s)."""
    return any(e.field is not None and e.field.path in POD_IP_FIELDS for e in spec.env)


def addresses(subnet: str, seed: str) -> Iterator[str]:
    """Candidate fixed addresses in ``subnet`` for the container named ``seed``: spread, never the gateway."""
    net = ipaddress.IPv4Network(subnet)
    usable = net.num_addresses - 3  # network, gateway (.1) and broadcast
    if usable <= 0:
        return
    start = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    for i in range(min(_ADDRESS_TRIES, usable)):
        yield str(net.network_address + 2 + (start + i) % usable)


def pod_name(rid: ReplicaId) -> str:
    """A replica's pod name: ``<workload>-<replica>``, stable across restarts, nodes and specs."""
    return f"{rid.key.name}-{rid.replica}"


def pod_uid(rid: ReplicaId) -> str:
    """A replica's pod uid: a UUID derived from its identity, so every node gives the same one."""
    return str(uuid.uuid5(_UIDS, str(rid)))


def resource_value(amount: Decimal, divisor: str) -> str:
    """``amount`` (cores or bytes) in units of ``divisor``, rounded up as Kubernetes does."""
    return str(math.ceil(amount / parse_quantity(divisor)))


def cpu_cores(millis: int) -> Decimal:
    """Millicores as cores."""
    return Decimal(millis) / 1000


@dataclass(frozen=True)
class PodValues:
    """What the node knows when it creates one replica's containers."""

    rid: ReplicaId
    node: str
    host_ip: str
    pod_ip: str
    # The node's capacity: what a limit left unset resolves to (0: not known).
    cpu_millis: int = 0
    memory_bytes: int = 0


def node_value(ref: FieldRef, pod: PodValues) -> str:
    """The value of a field the node resolves (``NODE_FIELDS``, or a limit left to the node's capacity)."""
    path = ref.path
    if path == "metadata.name":
        return pod_name(pod.rid)
    if path == "metadata.uid":
        return pod_uid(pod.rid)
    if path == "spec.nodeName":
        return pod.node
    if path in POD_IP_FIELDS:
        return pod.pod_ip
    if path in ("status.hostIP", "status.hostIPs"):
        return pod.host_ip
    if path == "limits.cpu":
        return resource_value(cpu_cores(pod.cpu_millis), ref.divisor)
    if path == "limits.memory":
        return resource_value(Decimal(pod.memory_bytes), ref.divisor)
    raise ValueError(f"not a field the node resolves: {path}")
