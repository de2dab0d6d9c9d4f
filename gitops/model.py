"""The domain model: resolved workload specs and what parsing a revision yields.

Specs are the units every node must agree on byte for byte, so hashing uses a
canonical JSON encoding (sorted keys, no whitespace) and never Python's ``hash()``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from gitops.identity import WorkloadKey
from gitops.scheduling import Scheduling

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]
WorkloadKind = Literal["Deployment", "DaemonSet", "Job", "CronJob", "StatefulSet"]


class Frozen(BaseModel):
    """Immutable, strict base for resolved specs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Frozen):
    """A node-local secret read from ``<secrets-dir>/<namespace>/<name>/<key>`` (every key if none), never from Git."""

    name: str
    key: str | None = None
    optional: bool = False
    # A keyed digest of the content on this node (gitops/secretdigest.py), so a change rolls; never the value.
    digest: str = ""


class ConfigMapRef(Frozen):
    """A ConfigMap reference as parsed; resolving the revision replaces it with the values, so it is never run."""

    name: str
    key: str | None = None
    optional: bool = False
    # Where it was written, for the error if it does not resolve.
    field: str
    line: int | None = None


class FieldRef(Frozen):
    """A downward API value the node resolves when it creates the container (gitops/downward.py)."""

    path: str
    # resource limits: the unit the value is given in (a quantity)
    divisor: str = "1"


class EnvVar(Frozen):
    """One environment variable: a literal value, a node-local secret, or a value the node knows."""

    name: str
    value: str | None = None
    secret: SecretRef | None = None
    config: ConfigMapRef | None = None
    field: FieldRef | None = None
    # ``value`` refers to values only the node knows (pod IP, node name): expanded there (expansion.template).
    template: bool = False


class EnvFrom(Frozen):
    """One envFrom source: a ConfigMap's values (resolved) or every key of a node-local secret."""

    prefix: str = ""
    values: tuple[tuple[str, str], ...] = ()
    config: ConfigMapRef | None = None
    secret: SecretRef | None = None


class VolumeFile(Frozen):
    """File(s) of a configMap, secret or projected volume; without ``path``, every key of the source at the root."""

    path: str = ""
    mode: int = 0o644
    content: str | None = None  # base64: a ConfigMap's value, resolved with the revision
    config: ConfigMapRef | None = None
    secret: SecretRef | None = None


class FileVolume(Frozen):
    """A volume of files written on the node for each container and bind-mounted read-only."""

    name: str
    files: tuple[VolumeFile, ...] = ()


class PortSpec(Frozen):
    """A container port, published on the host when ``host_port`` is set."""

    container_port: int
    host_port: int | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"


class NfsSource(Frozen):
    """An NFS export a pod mounts: ``server:path``."""

    server: str
    path: str


class Mount(Frozen):
    """A volume mount; ``source`` is a host path, the name of an emptyDir, files or nfs volume, or a claim's name."""

    target: str
    type: Literal["hostPath", "emptyDir", "files", "claim", "nfs"]
    source: str
    read_only: bool = False
    sub_path: str | None = None
    # Bind propagation of a hostPath mount: rslave is HostToContainer, rshared Bidirectional.
    propagation: Literal["rslave", "rshared"] | None = None
    # A StatefulSet's volumeClaimTemplate: each replica mounts its own claim ``<source>-<workload>-<replica>``.
    per_replica: bool = False
    # An nfs volume's export, mounted through a Docker volume with the local driver's NFS options.
    nfs: NfsSource | None = None


class Handler(Frozen):
    """What a probe or a lifecycle hook does: run a command, GET a URL, connect, or sleep."""

    handler: Literal["exec", "httpGet", "tcpSocket", "grpc", "sleep"]
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int = 0
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    # grpc: the service name the health check asks about ("": the server as a whole)
    service: str = ""
    # sleep: how long; httpGet: the request's timeout (hooks have no timeoutSeconds of their own)
    timeout_s: int = 1


class Hooks(Frozen):
    """A container's lifecycle hooks."""

    post_start: Handler | None = None
    pre_stop: Handler | None = None


class Probe(Handler):
    """A Kubernetes probe, with its timings in seconds."""

    initial_delay_s: int = 0
    period_s: int = 10
    success_threshold: int = 1
    failure_threshold: int = 3


class SecurityContext(Frozen):
    """Privileges of one container beyond its user; admission (gitops/admission.py) judges them per node."""

    privileged: bool = False
    # Capability names without the CAP_ prefix, upper case, sorted; "ALL" as in Kubernetes.
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    # allowPrivilegeEscalation: false
    no_new_privileges: bool = False
    run_as_non_root: bool = False
    seccomp: Literal["RuntimeDefault", "Unconfined", "Localhost"] = "RuntimeDefault"
    # Localhost: a file under the node's <state_dir>/seccomp/, read when the container is created.
    seccomp_profile: str | None = None


class ContainerSpec(Frozen):
    """One container of a pod, fully resolved from its manifest."""

    name: str
    image: str
    pull_policy: PullPolicy = "IfNotPresent"
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    working_dir: str | None = None
    user: str | None = None
    read_only_root: bool = False
    security: SecurityContext = SecurityContext()
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
    hooks: Hooks | None = None
    # "Always" on an init container makes it a native sidecar: started in order, kept running.
    restart_policy: Literal["Always"] | None = None
    # command and/or args refer to values only the node knows: templates the node expands.
    node_expanded: tuple[Literal["command", "args"], ...] = ()


class PodSpec(Frozen):
    """A pod: the containers that run together as one replica."""

    containers: tuple[ContainerSpec, ...]
    # In start order; plain ones run to completion, sidecars (restart_policy Always) keep running.
    init_containers: tuple[ContainerSpec, ...] = ()
    restart_policy: RestartPolicy = "Always"
    termination_grace_s: int = 30
    host_network: bool = False
    # Node secrets (``<name>/.dockerconfigjson``) holding registry credentials for pulls.
    image_pull_secrets: tuple[str, ...] = ()
    files: tuple[FileVolume, ...] = ()
    host_pid: bool = False
    host_ipc: bool = False
    # Namespaced sysctls (name, value), sorted by name.
    sysctls: tuple[tuple[str, str], ...] = ()
    # securityContext.fsGroup: a supplementary group of every container, and the group owning emptyDirs.
    fs_group: int | None = None

    def sidecars(self) -> tuple[ContainerSpec, ...]:
        """The native sidecars, in start order."""
        return tuple(c for c in self.init_containers if c.restart_policy == "Always")

    def long_running(self) -> tuple[ContainerSpec, ...]:
        """Containers that run for the replica's life, in start order: sidecars, then the app."""
        return (*self.sidecars(), *self.containers)

    def cpu_request_millis(self) -> int:
        """Millicores placement must reserve for one replica."""
        return self._request(lambda c: c.cpu_request_millis)

    def memory_request_mib(self) -> int:
        """MiB placement must reserve for one replica (rounded up)."""
        return -(-self._request(lambda c: c.memory_request_bytes) // (1024 * 1024))

    def _request(self, of: Callable[[ContainerSpec], int]) -> int:
        # Kubernetes' effective request: the long-running containers together, or an init
        # container with the sidecars started before it, whichever is more.
        peak, sidecars = 0, 0
        for c in self.init_containers:
            if c.restart_policy == "Always":
                sidecars += of(c)
            else:
                peak = max(peak, sidecars + of(c))
        return max(peak, sidecars + sum(of(c) for c in self.containers))

    def gpu_count(self) -> int:
        """GPUs one replica needs."""
        return sum(c.gpus for c in self.containers)

    def host_ports(self) -> tuple[tuple[int, str], ...]:
        """(port, protocol) pairs this pod binds on its node, sorted."""
        ports = ((p.host_port, p.protocol) for c in self.long_running() for p in c.ports if p.host_port)
        return tuple(sorted(ports))

    def is_exclusive(self) -> bool:
        """True where two copies must never run at once (volume backed)."""
        return any(m.type in ("hostPath", "claim") for c in self._all() for m in c.mounts)

    def claims(self) -> tuple[str, ...]:
        """Names of the PersistentVolumeClaims every replica mounts (not per-replica templates), sorted."""
        return tuple(
            sorted({m.source for c in self._all() for m in c.mounts if m.type == "claim" and not m.per_replica})
        )

    def _all(self) -> tuple[ContainerSpec, ...]:
        return (*self.init_containers, *self.containers)


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


class FailureRule(Frozen):
    """One podFailurePolicy rule on exit codes: the first rule a failed container matches decides."""

    action: Literal["FailJob", "FailIndex", "Ignore", "Count"]
    operator: Literal["In", "NotIn"]
    values: tuple[int, ...]
    # Only this container's exit code counts; None: any container's.
    container: str | None = None


class JobSpec(Frozen):
    """Run-to-completion settings of a Job (or a CronJob's job template); not part of the spec hash."""

    completions: int = 1
    parallelism: int = 1
    # Retries of one index; Kubernetes' backoffLimitPerIndex where set.
    backoff_limit: int = 6
    active_deadline_s: int | None = None
    indexed: bool = False
    suspend: bool = False
    ttl_after_finished_s: int | None = None
    max_failed_indexes: int | None = None
    failure_rules: tuple[FailureRule, ...] = ()


class CronSpec(Frozen):
    """Schedule of a CronJob; ``schedule`` is five cron fields, or six with seconds first."""

    schedule: str
    time_zone: str = "UTC"
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    starting_deadline_s: int | None = None
    successful_history: int = 3
    failed_history: int = 1
    suspend: bool = False


class ClaimTemplate(Frozen):
    """A StatefulSet's volumeClaimTemplate: replica ``i`` of workload ``w`` gets claim ``<name>-<w>-<i>``."""

    name: str
    storage_bytes: int
    storage_class: str | None = None


class StatefulSpec(Frozen):
    """What a StatefulSet adds to a workload: claim templates, ordering, updates, claim retention."""

    claims: tuple[ClaimTemplate, ...] = ()
    # podManagementPolicy OrderedReady: replica i starts once 0..i-1 are ready; Parallel: all at once.
    ordered: bool = True
    # updateStrategy: OnDelete keeps a running replica's spec until its container is removed.
    on_delete: bool = False
    # RollingUpdate partition: replicas below it keep their spec while they run.
    partition: int = 0
    # persistentVolumeClaimRetentionPolicy: delete the claims' volumes when the StatefulSet is deleted / scaled down.
    delete_when_deleted: bool = False
    delete_when_scaled: bool = False


class Workload(Frozen):
    """A resolved Deployment, DaemonSet, StatefulSet, Job or CronJob."""

    kind: WorkloadKind
    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    replicas: int = 1
    pod: PodSpec
    # What Services select and name (outside ``pod``: they change no container, so no hash).
    pod_labels: dict[str, str] = Field(default_factory=dict)
    port_names: dict[str, int] = Field(default_factory=dict)
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
    stateful: StatefulSpec | None = None
    # spec.replicas was written in Git (an autoscaler then takes it as its starting point only).
    replicas_set: bool = False

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
        """Break-before-make when moving: Recreate, host-volume backed, or a StatefulSet (one pod per ordinal)."""
        return self.strategy == "Recreate" or self.pod.is_exclusive() or self.kind == "StatefulSet"


class ClusterSpec(Frozen):
    """The optional ``gitops/v1 Cluster`` document."""

    heartbeat_seconds: int = 10
    node_timeout_seconds: int = 30
    cordoned: tuple[str, ...] = ()
    service_cidr: str = "10.96.0.0/16"


class ConfigMap(Frozen):
    """A ``v1 ConfigMap`` of the repository; ``binary_data`` values are base64."""

    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    data: dict[str, str] = Field(default_factory=dict)
    binary_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool = False

    @property
    def key(self) -> str:
        """``namespace/ConfigMap/name``, as invalid_keys name it."""
        return f"{self.namespace}/ConfigMap/{self.name}"


class Claim(Frozen):
    """A ``v1 PersistentVolumeClaim``: a named Docker volume on the node of its first user."""

    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    storage_bytes: int
    storage_class: str | None = None

    @property
    def key(self) -> str:
        """``namespace/PersistentVolumeClaim/name``, as invalid_keys name it."""
        return f"{self.namespace}/PersistentVolumeClaim/{self.name}"


class VolumeRelease(Frozen):
    """A ``gitops/v1 VolumeRelease``: the volumes of a claim on ``nodes`` no longer pin the claim's users there."""

    namespace: str = "default"
    claim: str
    nodes: tuple[str, ...]
    file: str
    line: int | None = None

    @property
    def key(self) -> str:
        """``namespace/VolumeRelease/claim``, as invalid_keys name it."""
        return f"{self.namespace}/VolumeRelease/{self.claim}"


class ServicePort(Frozen):
    """One port of a Service; ``node_port`` is allocated (``gitops/services/allocate.py``) unless requested."""

    name: str | None = None
    protocol: Literal["TCP", "UDP"] = "TCP"
    port: int
    # A container port number, or the name of a container port of each selected replica.
    target_port: int | str
    node_port: int | None = None


class Service(Frozen):
    """A resolved ``v1 Service``; LoadBalancer is served as NodePort, so it is not a type here."""

    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    type: Literal["ClusterIP", "NodePort", "ExternalName"] = "ClusterIP"
    # Empty: allocated from the Cluster's serviceCidr; "None": headless; an address: pinned by the manifest.
    cluster_ip: str = ""
    selector: dict[str, str] = Field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    external_name: str | None = None
    session_affinity: Literal["None", "ClientIP"] = "None"
    publish_not_ready: bool = False
    # Headless only: a virtual IP per replica it selects, by replica name (``web-0``), allocated like its own.
    endpoint_ips: dict[str, str] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """``namespace/Service/name``, as invalid_keys name it."""
        return f"{self.namespace}/Service/{self.name}"

    @property
    def headless(self) -> bool:
        """Whether the name resolves to the endpoints themselves instead of a virtual IP."""
        return self.cluster_ip == "None"


class ScalingPolicy(Frozen):
    """One HPA scaling policy: at most ``value`` pods or percent of replicas per ``period_s``."""

    type: Literal["Pods", "Percent"]
    value: int
    period_s: int


class ScalingRules(Frozen):
    """One direction of an HPA's behavior, Kubernetes' defaults already applied."""

    window_s: int
    select: Literal["Max", "Min", "Disabled"] = "Max"
    policies: tuple[ScalingPolicy, ...]


# Kubernetes' defaults (pkg/apis/autoscaling/v2/defaults.go).
SCALE_UP_DEFAULT = ScalingRules(
    window_s=0,
    policies=(ScalingPolicy(type="Pods", value=4, period_s=15), ScalingPolicy(type="Percent", value=100, period_s=15)),
)
SCALE_DOWN_DEFAULT = ScalingRules(window_s=300, policies=(ScalingPolicy(type="Percent", value=100, period_s=15),))


# The Pods metrics this project measures itself (docs/autoscaling.md), in thousandths per replica.
POD_METRICS = ("gpu_utilization", "requests_per_second")


class MetricTarget(Frozen):
    """A Resource metric (cpu, memory) or a Pods metric (named in ``POD_METRICS``) and its target.

    ``resource`` names either; ``utilization`` is percent of requests, ``average`` a value per replica:
    millicores for cpu, bytes for memory, thousandths of a percent or of a connection per second for Pods.
    """

    resource: Literal["cpu", "memory", "gpu_utilization", "requests_per_second"]
    utilization: int | None = None
    average: int | None = None


class Autoscaler(Frozen):
    """A resolved HorizontalPodAutoscaler (autoscaling/v2 or v1)."""

    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    target_kind: Literal["Deployment", "StatefulSet"]
    target_name: str
    min_replicas: int = 1
    max_replicas: int
    metrics: tuple[MetricTarget, ...]
    scale_up: ScalingRules = SCALE_UP_DEFAULT
    scale_down: ScalingRules = SCALE_DOWN_DEFAULT

    @property
    def key(self) -> str:
        """``namespace/HorizontalPodAutoscaler/name``, as invalid_keys name it."""
        return f"{self.namespace}/HorizontalPodAutoscaler/{self.name}"

    @property
    def target(self) -> WorkloadKey:
        """The key of the workload it scales."""
        return WorkloadKey.of(self.namespace, self.target_kind, self.target_name)


class FileResult(Frozen):
    """Everything one file yields; pure in the file's path and bytes, so cacheable by blob id."""

    workloads: tuple[Workload, ...] = ()
    config_maps: tuple[ConfigMap, ...] = ()
    claims: tuple[Claim, ...] = ()
    releases: tuple[VolumeRelease, ...] = ()
    services: tuple[Service, ...] = ()
    autoscalers: tuple[Autoscaler, ...] = ()
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
    config_maps: tuple[ConfigMap, ...] = ()
    claims: tuple[Claim, ...] = ()
    releases: tuple[VolumeRelease, ...] = ()
    services: tuple[Service, ...] = ()
    autoscalers: tuple[Autoscaler, ...] = ()
    cluster: ClusterSpec = ClusterSpec()
    errors: tuple[ManifestError, ...] = ()
    warnings: tuple[str, ...] = ()
    invalid_keys: tuple[str, ...] = ()
    # Files that failed so badly no document could be read (YAML syntax, size, encoding).
    unreadable_files: tuple[str, ...] = ()
