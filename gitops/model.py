"""The domain model: resolved workload specs and what parsing a revision yields.

Specs are the units every node must agree on byte for byte, so hashing uses a
canonical JSON encoding (sorted keys, no whitespace) and never Python's ``hash()``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from gitops.identity import WorkloadKey
from gitops.scheduling import Scheduling

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]
WorkloadKind = Literal["Deployment", "DaemonSet", "Job", "CronJob"]


class Frozen(BaseModel):
    """Immutable, strict base for resolved specs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Frozen):
    """A value read on the node from ``<secrets-dir>/<namespace>/<name>/<key>``, never from Git."""

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
    """Canonical bytes of a model: sorted keys, no whitespace, UTF-8, fields at their default left out.

    Leaving defaults out keeps a spec's hash when a later version adds a field: upgrading the
    daemon must not roll every workload in the cluster.
    """
    data = model.model_dump(mode="json", exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def spec_hash(pod: PodSpec) -> str:
    """sha256 hex of the canonical pod spec; equal on every node and Python version."""
    return hashlib.sha256(canonical_json(pod)).hexdigest()


class ManifestError(Frozen):
    """One problem in one file: where it is, which field, and what to do."""

    file: str
    line: int | None = None
    field: str | None = None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class JobSpec(Frozen):
    """Run-to-completion settings of a Job (or a CronJob's job template)."""

    completions: int = 1
    parallelism: int = 1
    backoff_limit: int = 6
    active_deadline_s: int | None = None


class CronSpec(Frozen):
    """Schedule of a CronJob; ``schedule`` is five cron fields, or six with seconds first."""

    schedule: str
    time_zone: str = "UTC"
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    starting_deadline_s: int | None = None
    successful_history: int = 3
    failed_history: int = 1
    suspend: bool = False


class Workload(Frozen):
    """A resolved Deployment, DaemonSet, Job or CronJob."""

    kind: WorkloadKind
    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    replicas: int = 1
    pod: PodSpec
    node_selector: dict[str, str] = Field(default_factory=dict)
    # Affinity, tolerations and topology spread: placement input only, outside the spec hash.
    scheduling: Scheduling = Scheduling()
    strategy: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    # Already resolved against ``replicas`` (Kubernetes rounds unavailable down, surge up).
    max_unavailable: int = 0
    max_surge: int = 1
    progress_deadline_s: int = 600
    min_ready_s: int = 0
    job: JobSpec | None = None
    cron: CronSpec | None = None

    @cached_property
    def key(self) -> WorkloadKey:
        """Stable identity across revisions: namespace/kind/name."""
        return WorkloadKey.of(self.namespace, self.kind, self.name)

    @cached_property
    def spec_hash(self) -> str:
        """Hash of the pod spec every replica runs; computed once per workload."""
        return spec_hash(self.pod)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied; cached identity and hash are recomputed."""
        copied = super().model_copy(update=update, deep=deep)
        for cached in ("key", "spec_hash"):
            copied.__dict__.pop(cached, None)
        return copied

    @property
    def exclusive(self) -> bool:
        """Break-before-make when moving: Recreate strategy or host-volume backed."""
        return self.strategy == "Recreate" or self.pod.is_exclusive()


class ClusterSpec(Frozen):
    """The optional ``gitops/v1 Cluster`` document."""

    heartbeat_seconds: int = 10
    node_timeout_seconds: int = 30
    cordoned: tuple[str, ...] = ()


class FileResult(Frozen):
    """Everything one file yields; pure in the file's path and bytes, so cacheable by blob id."""

    workloads: tuple[Workload, ...] = ()
    cluster: ClusterSpec | None = None
    errors: tuple[ManifestError, ...] = ()
    warnings: tuple[str, ...] = ()
    # Keys (namespace/kind/name) of documents that named a workload but did not validate.
    invalid_keys: tuple[str, ...] = ()
    # The file could not be read, or holds a document that cannot be identified: keep all it held.
    unreadable: bool = False


class ManifestSet(Frozen):
    """All manifests of one revision."""

    workloads: tuple[Workload, ...] = ()
    cluster: ClusterSpec = ClusterSpec()
    errors: tuple[ManifestError, ...] = ()
    warnings: tuple[str, ...] = ()
    invalid_keys: tuple[str, ...] = ()
    # Files that failed so badly no document could be read (YAML syntax, size, encoding).
    unreadable_files: tuple[str, ...] = ()
