"""Resolved workload specs: what manifests turn into and what the planner compares.

These are the units every node must agree on byte for byte, so hashing uses a
canonical JSON encoding (sorted keys, no whitespace) and never Python's ``hash()``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]
WorkloadKind = Literal["Deployment", "DaemonSet", "Job", "CronJob"]
ReplicaId = tuple[str, int]  # (workload key namespace/kind/name, replica index)


class Frozen(BaseModel):
    """Immutable, strict base for resolved specs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Frozen):
    """A value read on the node from ``<secrets-dir>/<name>/<key>``, never from Git."""

    name: str
    key: str
    optional: bool = False


class EnvVar(Frozen):
    """One environment variable: a literal value or a node-local secret."""

    name: str
    value: str | None = None
    secret: SecretRef | None = None


class PortSpec(Frozen):
    """A container port, published on the host when ``host_port`` is set."""

    container_port: int
    host_port: int | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"


class Mount(Frozen):
    """A volume mount; ``source`` is a host path or an emptyDir volume name."""

    target: str
    type: Literal["hostPath", "emptyDir"]
    source: str
    read_only: bool = False
    sub_path: str | None = None


class Probe(Frozen):
    """A Kubernetes probe, with its timings in seconds."""

    handler: Literal["exec", "httpGet", "tcpSocket"]
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int = 0
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay_s: int = 0
    period_s: int = 10
    timeout_s: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


class ContainerSpec(Frozen):
    """One container of a pod, fully resolved from its manifest."""

    name: str
    image: str
    pull_policy: PullPolicy = "IfNotPresent"
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[EnvVar, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    working_dir: str | None = None
    user: str | None = None
    read_only_root: bool = False
    # Limits are what Docker enforces; requests are what placement counts.
    cpu_limit_millis: int | None = None
    memory_limit_bytes: int | None = None
    cpu_request_millis: int = 0
    memory_request_bytes: int = 0
    gpus: int = 0
    mounts: tuple[Mount, ...] = ()
    liveness: Probe | None = None
    readiness: Probe | None = None
    startup: Probe | None = None


class PodSpec(Frozen):
    """A pod: the containers that run together as one replica."""

    containers: tuple[ContainerSpec, ...]
    restart_policy: RestartPolicy = "Always"
    termination_grace_s: int = 30
    host_network: bool = False

    def cpu_request_millis(self) -> int:
        """Millicores placement must reserve for one replica."""
        return sum(c.cpu_request_millis for c in self.containers)

    def memory_request_mib(self) -> int:
        """MiB placement must reserve for one replica (rounded up)."""
        total = sum(c.memory_request_bytes for c in self.containers)
        return -(-total // (1024 * 1024))

    def gpu_count(self) -> int:
        """GPUs one replica needs."""
        return sum(c.gpus for c in self.containers)

    def host_ports(self) -> tuple[tuple[int, str], ...]:
        """(port, protocol) pairs this pod binds on its node, sorted."""
        return tuple(sorted((p.host_port, p.protocol) for c in self.containers for p in c.ports if p.host_port))

    def is_exclusive(self) -> bool:
        """True where two copies must never run at once (volume backed)."""
        return any(m.type == "hostPath" for c in self.containers for m in c.mounts)


def canonical_json(model: BaseModel) -> bytes:
    """Canonical bytes of a model: sorted keys, no whitespace, UTF-8."""
    data = model.model_dump(mode="json")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def spec_hash(pod: PodSpec) -> str:
    """sha256 hex of the canonical pod spec; equal on every node and Python version."""
    return hashlib.sha256(canonical_json(pod)).hexdigest()
