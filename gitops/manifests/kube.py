"""The Kubernetes subset gitops reads, as strict pydantic models named after the Kubernetes types.

Each field is supported (typed), ``Ignored`` (dropped with a warning) or ``Refuse``d
(an error naming what to do). Checks that involve several fields live in
``pod.py`` and ``workload.py``; these models only check each value on its own.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gitops.manifests import cron, quantity
from gitops.manifests.fields import (
    AbsolutePath,
    Capability,
    Count,
    CpuMillis,
    EnvName,
    Gpus,
    Ignore,
    Image,
    IntOrPercent,
    KubeModel,
    Label,
    MemoryBytes,
    NamePrefix,
    Port,
    PortName,
    PortRef,
    PositiveSeconds,
    Refuse,
    RelativePath,
    Seconds,
    StorageBytes,
    SysctlName,
    Uid,
    checked,
    refusal,
    refuse_when,
)
from gitops.model import POD_METRICS

_API_SERVER = Ignore("set by a Kubernetes API server")
_NO_ACCOUNTS = Ignore("there is no Kubernetes API server, so no service accounts or tokens")
_PLACEMENT = Ignore("placement here is by capacity-weighted hashing over live nodes")


# --- metadata ---------------------------------------------------------------------------------


class ObjectMeta(KubeModel):
    """metadata of a workload."""

    name: Label
    namespace: Label = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # The loader derives ``name`` from it (gitops/manifests/names.py, ``generated_name``).
    generate_name: NamePrefix | None = None
    uid: Annotated[object, _API_SERVER] = None
    resource_version: Annotated[object, _API_SERVER] = None
    generation: Annotated[object, _API_SERVER] = None
    creation_timestamp: Annotated[object, _API_SERVER] = None
    deletion_timestamp: Annotated[object, _API_SERVER] = None
    deletion_grace_period_seconds: Annotated[object, _API_SERVER] = None
    managed_fields: Annotated[object, _API_SERVER] = None
    self_link: Annotated[object, _API_SERVER] = None
    owner_references: Annotated[object, Ignore("there is no garbage collector; Git decides what exists")] = None
    finalizers: Annotated[object, Ignore("there is no garbage collector; Git decides what exists")] = None


def _no_legacy_init_containers(annotations: dict[str, str]) -> dict[str, str]:
    legacy = [k for k in annotations if k.endswith("kubernetes.io/init-containers")]
    if legacy:
        raise refusal(
            f"annotation '{legacy[0]}' declares init containers the legacy way, which is not read; "
            "list them under spec.initContainers"
        )
    return annotations


class TemplateMeta(KubeModel):
    """metadata of a pod or job template."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: Annotated[dict[str, str], checked(_no_legacy_init_containers)] = Field(default_factory=dict)
    name: Annotated[object, Ignore("each replica gets its own container name (namespace.name.replica.hash)")] = None
    namespace: Annotated[object, Ignore("the workload's namespace applies")] = None
    creation_timestamp: Annotated[object, _API_SERVER] = None


# --- containers -------------------------------------------------------------------------------


class ContainerPort(KubeModel):
    """containers[].ports[]."""

    container_port: Port
    host_port: Port | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    name: PortName | None = None
    host_ip: Annotated[
        object, Refuse("binding a host port to one address is not supported; remove hostIP to publish on all")
    ] = Field(default=None, alias="hostIP")


class LocalObjectReference(KubeModel):
    """A reference by name to an object in the workload's namespace (imagePullSecrets[])."""

    name: Label


# A key of a ConfigMap or secret: also a file name, in secrets dirs and volumes.
DataKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
FileMode = Annotated[int, Field(ge=0, le=0o777)]


class SecretKeySelector(KubeModel):
    """env[].valueFrom.secretKeyRef: read on the node from <secrets-dir>/<namespace>/<name>/<key>."""

    name: Label
    key: DataKey
    optional: bool = False


class ConfigMapKeySelector(KubeModel):
    """env[].valueFrom.configMapKeyRef: a key of a ConfigMap in the repository."""

    name: Label
    key: DataKey
    optional: bool = False


class ConfigMapEnvSource(KubeModel):
    """envFrom[].configMapRef."""

    name: Label
    optional: bool = False


class SecretEnvSource(KubeModel):
    """envFrom[].secretRef: every key of <secrets-dir>/<namespace>/<name>/ on the node."""

    name: Label
    optional: bool = False


class EnvFromSource(KubeModel):
    """containers[].envFrom[]."""

    prefix: str = ""
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of configMapRef and secretRef")
        return self


_FIELD_PATHS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.podIPs",
        "status.hostIP",
        "status.hostIPs",
    }
)
_KEYED_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]\Z")


class ObjectFieldSelector(KubeModel):
    """env[].valueFrom.fieldRef: the downward API fields that have a value here (gitops/downward.py)."""

    field_path: Annotated[
        str,
        refuse_when(
            lambda path: path not in _FIELD_PATHS and not _KEYED_FIELD.match(path),
            "supported fieldRefs are metadata.name, metadata.namespace, metadata.uid, metadata.labels['key'], "
            "metadata.annotations['key'], spec.nodeName, spec.serviceAccountName, status.podIP(s) and "
            "status.hostIP(s); write any other value under env[].value",
        ),
    ]
    api_version: str = "v1"

    def keyed(self) -> tuple[str, str] | None:
        """``("labels" | "annotations", key)`` for a metadata.labels['key'] style path, else None."""
        match = _KEYED_FIELD.match(self.field_path)
        return (match.group(1), match.group(2)) if match else None


def _positive_quantity(value: str | int) -> str:
    if quantity.parse_quantity(value) <= 0:
        raise ValueError(f"divisor '{value}' must be more than zero")
    return str(value)


class ResourceFieldSelector(KubeModel):
    """env[].valueFrom.resourceFieldRef: a container's cpu or memory request or limit."""

    resource: Annotated[
        str,
        refuse_when(
            lambda r: r not in ("limits.cpu", "limits.memory", "requests.cpu", "requests.memory"),
            "only limits.cpu, limits.memory, requests.cpu and requests.memory are exposed; "
            "write any other value under env[].value",
        ),
    ]
    container_name: str | None = None
    divisor: Annotated[str | int, checked(_positive_quantity)] = "1"


class EnvVarSource(KubeModel):
    """env[].valueFrom."""

    secret_key_ref: SecretKeySelector | None = None
    field_ref: ObjectFieldSelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        sources = (self.secret_key_ref, self.field_ref, self.config_map_key_ref, self.resource_field_ref)
        if sum(s is not None for s in sources) > 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef")
        return self


class EnvVar(KubeModel):
    """containers[].env[]."""

    name: EnvName
    value: str | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env '{self.name}' sets both value and valueFrom; keep one")
        return self


class ResourceList(KubeModel):
    """resources.limits / resources.requests."""

    cpu: CpuMillis | None = None
    memory: MemoryBytes | None = None
    gpu: Gpus | None = Field(default=None, alias="nvidia.com/gpu")
    ephemeral_storage: Annotated[object, Ignore("Docker does not cap a container's writable layer here")] = Field(
        default=None, alias="ephemeral-storage"
    )


class ResourceRequirements(KubeModel):
    """containers[].resources."""

    limits: ResourceList | None = None
    requests: ResourceList | None = None
    claims: Annotated[object, Refuse("dynamic resource claims are not supported; use nvidia.com/gpu limits")] = None


class VolumeMount(KubeModel):
    """containers[].volumeMounts[]."""

    name: str
    mount_path: AbsolutePath
    read_only: bool = False
    sub_path: RelativePath | None = None
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = None
    sub_path_expr: Annotated[object, Refuse("subPathExpr is not expanded; use a fixed subPath")] = None
    recursive_read_only: Annotated[object, Refuse("recursiveReadOnly is not applied; remove it")] = None


class ExecAction(KubeModel):
    """probe.exec."""

    command: Annotated[list[str], Field(min_length=1)]


class HTTPHeader(KubeModel):
    """probe.httpGet.httpHeaders[]."""

    name: Annotated[str, Field(min_length=1)]
    value: str


class HTTPGetAction(KubeModel):
    """probe.httpGet."""

    path: str = "/"
    port: PortRef
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] = Field(default_factory=list)


class TCPSocketAction(KubeModel):
    """probe.tcpSocket."""

    port: PortRef
    host: str | None = None


class GRPCAction(KubeModel):
    """probe.grpc: the standard gRPC health check (grpc.health.v1.Health/Check)."""

    port: Port
    service: str | None = None


class SleepAction(KubeModel):
    """lifecycle.*.sleep."""

    seconds: Seconds


class LifecycleHandler(KubeModel):
    """lifecycle.postStart / lifecycle.preStop: exactly one of exec, httpGet and sleep."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    sleep: SleepAction | None = None
    tcp_socket: Annotated[object, Refuse("tcpSocket hooks are deprecated and not run; use exec, httpGet or sleep")] = (
        None
    )

    @model_validator(mode="after")
    def _one_handler(self) -> LifecycleHandler:
        if sum(h is not None for h in (self.exec, self.http_get, self.sleep)) != 1:
            raise ValueError("set exactly one of exec, httpGet and sleep")
        return self


class Lifecycle(KubeModel):
    """containers[].lifecycle."""

    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None
    stop_signal: Annotated[
        object, Refuse("stopSignal is not applied; handle SIGTERM, or set STOPSIGNAL in the image")
    ] = None


class Probe(KubeModel):
    """livenessProbe / readinessProbe / startupProbe."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: Seconds = 0
    period_seconds: PositiveSeconds = 10
    timeout_seconds: PositiveSeconds = 1
    success_threshold: Annotated[int, Field(ge=1, le=1000)] = 1
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 3
    termination_grace_period_seconds: Annotated[object, Ignore("the pod's terminationGracePeriodSeconds applies")] = (
        None
    )

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        if sum(h is not None for h in (self.exec, self.http_get, self.tcp_socket, self.grpc)) != 1:
            raise ValueError("a probe needs exactly one of exec, httpGet, tcpSocket and grpc")
        return self


class Capabilities(KubeModel):
    """securityContext.capabilities: applied as Docker's cap_add and cap_drop."""

    add: list[Capability] = Field(default_factory=list)
    drop: list[Capability] = Field(default_factory=list)


class SeccompProfile(KubeModel):
    """securityContext.seccompProfile: RuntimeDefault is Docker's profile; Localhost reads the node's file."""

    type: Literal["RuntimeDefault", "Unconfined", "Localhost"]
    localhost_profile: RelativePath | None = None

    @model_validator(mode="after")
    def _profile_for_localhost(self) -> SeccompProfile:
        if (self.type == "Localhost") != (self.localhost_profile is not None):
            raise ValueError("localhostProfile is required with type Localhost, and only with it")
        return self


class AppArmorProfile(KubeModel):
    """securityContext.appArmorProfile: Docker's default profile is RuntimeDefault."""

    type: Annotated[
        Literal["RuntimeDefault", "Unconfined", "Localhost"],
        refuse_when(lambda t: t != "RuntimeDefault", "only appArmorProfile type RuntimeDefault (Docker's) is applied"),
    ]
    localhost_profile: str | None = None


_SE_LINUX = Refuse("SELinux options are not applied; remove seLinuxOptions")
_WINDOWS = Ignore("containers here run on Linux")


class SecurityContext(KubeModel):
    """containers[].securityContext."""

    run_as_user: Uid | None = None
    run_as_group: Uid | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool = False
    allow_privilege_escalation: bool | None = None
    privileged: bool | None = None
    capabilities: Capabilities | None = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None
    se_linux_options: Annotated[object, _SE_LINUX] = None
    proc_mount: Annotated[str | None, refuse_when(lambda m: m != "Default", "procMount is not applied; remove it")] = (
        None
    )
    windows_options: Annotated[object, _WINDOWS] = None


class Container(KubeModel):
    """containers[]."""

    name: Label
    image: Image
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: AbsolutePath | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    security_context: SecurityContext | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: Annotated[object, Ignore("exit status and logs are reported instead")] = None
    termination_message_policy: Annotated[object, Ignore("exit status and logs are reported instead")] = None
    stdin: Annotated[object, Ignore("containers here get no attached stdin")] = None
    stdin_once: Annotated[object, Ignore("containers here get no attached stdin")] = None
    tty: Annotated[object, Ignore("containers here get no terminal")] = None
    resize_policy: Annotated[object, Ignore("resources change by a new commit, which replaces the container")] = None
    volume_devices: Annotated[object, Refuse("raw block devices are not supported; remove volumeDevices")] = None
    # Only in initContainers (checked in pod.py): a native sidecar.
    restart_policy: Annotated[
        str | None,
        refuse_when(lambda v: v != "Always", "only restartPolicy: Always (a native sidecar) is supported; remove it"),
    ] = None


# --- volumes ----------------------------------------------------------------------------------


class HostPathVolumeSource(KubeModel):
    """volumes[].hostPath: a bind mount of a node path."""

    path: AbsolutePath
    type: Literal[
        "", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"
    ] = ""


# An NFS server as mount's addr= option takes it: a host name or an IP address, nothing that ends the option.
NfsServer = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][-A-Za-z0-9.:]*$")]


class NFSVolumeSource(KubeModel):
    """volumes[].nfs: an NFS export, mounted by the engine (Docker's local driver with NFS options)."""

    server: NfsServer
    path: Annotated[AbsolutePath, Field(pattern=r"^[^,]*$")]
    read_only: bool = False


class EmptyDirVolumeSource(KubeModel):
    """volumes[].emptyDir: a Docker volume that lives as long as the replica."""

    medium: Literal["", "Memory"] = ""
    size_limit: Annotated[object, Ignore("Docker volumes have no size limit here")] = None


class KeyToPath(KubeModel):
    """items[] of a configMap or secret source: one key, written at ``path``."""

    key: DataKey
    path: RelativePath
    mode: FileMode | None = None


class ConfigMapVolumeSource(KubeModel):
    """volumes[].configMap: files from a ConfigMap of the repository."""

    name: Label
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: FileMode = 0o644
    optional: bool = False


class SecretVolumeSource(KubeModel):
    """volumes[].secret: files from <secrets-dir>/<namespace>/<secretName>/ on the node."""

    secret_name: Label
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: FileMode = 0o644
    optional: bool = False


class ConfigMapProjection(KubeModel):
    """projected.sources[].configMap."""

    name: Label
    items: list[KeyToPath] = Field(default_factory=list)
    optional: bool = False


class SecretProjection(KubeModel):
    """projected.sources[].secret."""

    name: Label
    items: list[KeyToPath] = Field(default_factory=list)
    optional: bool = False


class VolumeProjection(KubeModel):
    """projected.sources[]."""

    config_map: ConfigMapProjection | None = None
    secret: SecretProjection | None = None
    downward_api: Annotated[
        object, Refuse("downwardAPI projections are not written; put the values in a ConfigMap")
    ] = Field(default=None, alias="downwardAPI")
    service_account_token: Annotated[object, Refuse("there are no service account tokens; remove the source")] = None
    cluster_trust_bundle: Annotated[object, Refuse("cluster trust bundles are not supported; use a ConfigMap")] = None

    @model_validator(mode="after")
    def _one_source(self) -> VolumeProjection:
        if (self.config_map is None) == (self.secret is None):
            raise ValueError("a projected source needs exactly one of configMap and secret")
        return self


class ProjectedVolumeSource(KubeModel):
    """volumes[].projected: configMap and secret sources in one directory."""

    sources: list[VolumeProjection] = Field(default_factory=list)
    default_mode: FileMode = 0o644


class PersistentVolumeClaimVolumeSource(KubeModel):
    """volumes[].persistentVolumeClaim: the node-local volume of a claim of the repository."""

    claim_name: Label
    read_only: bool = False


def _volume_type(name: str, what_to_do: str) -> Refuse:
    return Refuse(f"{name} volumes are not supported; {what_to_do}")


class Volume(KubeModel):
    """volumes[]."""

    name: Label
    host_path: HostPathVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    downward_api: Annotated[object, _volume_type("downwardAPI", "put the values in a ConfigMap volume")] = Field(
        default=None, alias="downwardAPI"
    )
    nfs: NFSVolumeSource | None = None
    csi: Annotated[object, _volume_type("csi", "use a hostPath")] = None
    ephemeral: Annotated[object, _volume_type("ephemeral", "use an emptyDir")] = None
    image: Annotated[object, _volume_type("image", "copy the files in the image build instead")] = None

    @model_validator(mode="after")
    def _one_type(self) -> Volume:
        sources = (
            self.host_path,
            self.empty_dir,
            self.config_map,
            self.secret,
            self.projected,
            self.persistent_volume_claim,
            self.nfs,
        )
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                f"volume '{self.name}' needs exactly one of hostPath, emptyDir, configMap, secret, projected, "
                "persistentVolumeClaim and nfs"
            )
        return self


# --- pods -------------------------------------------------------------------------------------


class Sysctl(KubeModel):
    """securityContext.sysctls[]: namespaced sysctls only, applied as Docker's sysctls."""

    name: SysctlName
    value: str


class PodSecurityContext(KubeModel):
    """spec.template.spec.securityContext: defaults for every container."""

    run_as_user: Uid | None = None
    run_as_group: Uid | None = None
    run_as_non_root: bool | None = None
    fs_group: Uid | None = None
    fs_group_change_policy: Annotated[
        object, Ignore("only an emptyDir's top directory is given to fsGroup, at every container start")
    ] = None
    supplemental_groups: Annotated[
        object, Refuse("supplementalGroups are not applied; give the needed group as runAsGroup")
    ] = None
    supplemental_groups_policy: Annotated[object, Ignore("supplementalGroups are not used")] = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None
    se_linux_options: Annotated[object, _SE_LINUX] = None
    se_linux_change_policy: Annotated[object, Ignore("SELinux labels are not managed")] = None
    sysctls: list[Sysctl] = Field(default_factory=list)
    windows_options: Annotated[object, _WINDOWS] = None


class NodeSelectorRequirement(KubeModel):
    """nodeSelectorTerms[].matchExpressions[] / matchFields[]."""

    key: Annotated[str, Field(min_length=1, max_length=316)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> NodeSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        if self.operator in ("Gt", "Lt") and (len(self.values) != 1 or not _is_integer(self.values[0])):
            raise ValueError(f"operator {self.operator} needs exactly one integer value")
        return self


def _is_integer(text: str) -> bool:
    return text.lstrip("-").isdigit() and len(text) <= 19


class NodeSelectorTerm(KubeModel):
    """nodeSelectorTerms[] / preference: matchExpressions on labels, matchFields on metadata.name."""

    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list)
    match_fields: list[
        Annotated[
            NodeSelectorRequirement,
            refuse_when(
                lambda r: r.key != "metadata.name" or r.operator in ("Gt", "Lt"),
                "matchFields supports key metadata.name with In, NotIn, Exists or DoesNotExist; "
                "use matchExpressions on a node label",
            ),
        ]
    ] = Field(default_factory=list)


class NodeSelector(KubeModel):
    """requiredDuringSchedulingIgnoredDuringExecution of nodeAffinity."""

    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(min_length=1)]


class PreferredSchedulingTerm(KubeModel):
    """preferredDuringSchedulingIgnoredDuringExecution[] of nodeAffinity."""

    weight: Annotated[int, Field(ge=1, le=100)]
    preference: NodeSelectorTerm


class NodeAffinity(KubeModel):
    """affinity.nodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(default_factory=list)


_OWN_NAMESPACE = "only the workload's own namespace is counted; remove it"


class PodAffinityTerm(KubeModel):
    """A pod (anti-)affinity term; its selector must select the workload's own pod labels."""

    label_selector: LabelSelector | None = None
    topology_key: Annotated[str, Field(min_length=1, max_length=316)]
    namespaces: Annotated[object, Refuse(f"namespaces: {_OWN_NAMESPACE}")] = None
    namespace_selector: Annotated[object, Refuse(f"namespaceSelector: {_OWN_NAMESPACE}")] = None
    match_label_keys: Annotated[object, Ignore("replicas of every revision of the workload count together")] = None
    mismatch_label_keys: Annotated[object, Refuse("mismatchLabelKeys is not supported; remove it")] = None


class WeightedPodAffinityTerm(KubeModel):
    """preferredDuringSchedulingIgnoredDuringExecution[] of pod (anti-)affinity."""

    weight: Annotated[int, Field(ge=1, le=100)]
    pod_affinity_term: PodAffinityTerm


class PodAntiAffinity(KubeModel):
    """affinity.podAntiAffinity."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(default_factory=list)
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(default_factory=list)


class PodAffinity(KubeModel):
    """affinity.podAffinity."""

    required_during_scheduling_ignored_during_execution: Annotated[
        object,
        Refuse(
            "required podAffinity is not supported; to run replicas on chosen nodes, use nodeSelector "
            "or nodeAffinity on a node label such as kubernetes.io/hostname"
        ),
    ] = None
    preferred_during_scheduling_ignored_during_execution: Annotated[
        object, Ignore("pods are not co-located by preference; use preferred nodeAffinity")
    ] = None


class Affinity(KubeModel):
    """spec.template.spec.affinity."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAntiAffinity | None = None


class Toleration(KubeModel):
    """spec.template.spec.tolerations[]."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("an empty key needs operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies to effect NoExecute only")
        return self


class TopologySpreadConstraint(KubeModel):
    """spec.template.spec.topologySpreadConstraints[]; its selector must select the workload's own pod labels."""

    max_skew: Annotated[int, Field(ge=1, le=1000)]
    topology_key: Annotated[str, Field(min_length=1, max_length=316)]
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: Annotated[int, Field(ge=1, le=1000)] | None = None
    match_label_keys: Annotated[object, Ignore("replicas of every revision of the workload count together")] = None
    node_affinity_policy: Annotated[
        object, Ignore("domains are those of the nodes the workload may run on (selector, affinity and taints)")
    ] = None
    node_taints_policy: Annotated[
        object, Ignore("domains are those of the nodes the workload may run on (selector, affinity and taints)")
    ] = None


class PodSpec(KubeModel):
    """spec.template.spec."""

    containers: Annotated[list[Container], Field(min_length=1)]
    volumes: list[Volume] = Field(default_factory=list)
    restart_policy: Literal["Always", "OnFailure", "Never"] | None = None
    termination_grace_period_seconds: Seconds | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    host_network: bool = False
    security_context: PodSecurityContext | None = None
    affinity: Affinity | None = None
    init_containers: list[Container] = Field(default_factory=list)
    ephemeral_containers: Annotated[object, Refuse("ephemeral containers are not supported; remove them")] = None
    host_pid: bool = Field(default=False, alias="hostPID")
    host_ipc: bool = Field(default=False, alias="hostIPC")
    host_users: Annotated[object, Refuse("user namespaces are not applied; remove hostUsers")] = None
    share_process_namespace: Annotated[
        object, Refuse("containers of a replica do not share a process namespace here; remove it")
    ] = None
    host_aliases: Annotated[object, Refuse("/etc/hosts entries are not added; use DNS names")] = None
    active_deadline_seconds: Annotated[
        object, Refuse("pod deadlines are not enforced; use activeDeadlineSeconds on a Job")
    ] = None
    node_name: Annotated[object, Refuse("pods are placed by gitops; use nodeSelector on a node label")] = None
    runtime_class_name: Annotated[
        object, Refuse("runtime classes are not supported; GPUs come from resources.limits nvidia.com/gpu")
    ] = None
    readiness_gates: Annotated[object, Refuse("readiness gates are not evaluated; use a readinessProbe")] = None
    scheduling_gates: Annotated[object, Refuse("scheduling gates are not supported; remove them")] = None
    resource_claims: Annotated[object, Refuse("dynamic resource claims are not supported")] = None
    resources: Annotated[object, Refuse("pod-level resources are not supported; set them per container")] = None
    tolerations: list[Toleration] = Field(default_factory=list)
    topology_spread_constraints: list[TopologySpreadConstraint] = Field(default_factory=list)
    service_account_name: Annotated[object, _NO_ACCOUNTS] = None
    service_account: Annotated[object, _NO_ACCOUNTS] = None
    automount_service_account_token: Annotated[object, _NO_ACCOUNTS] = None
    priority_class_name: Annotated[object, Ignore("there is no preemption here")] = None
    priority: Annotated[object, Ignore("there is no preemption here")] = None
    preemption_policy: Annotated[object, Ignore("there is no preemption here")] = None
    dns_policy: Annotated[object, Ignore("containers use Docker's DNS settings")] = None
    dns_config: Annotated[object, Ignore("containers use Docker's DNS settings")] = None
    hostname: Annotated[object, Ignore("the container hostname is Docker's default")] = None
    subdomain: Annotated[object, Ignore("the container hostname is Docker's default")] = None
    set_hostname_as_fqdn: Annotated[object, Ignore("the container hostname is Docker's default")] = Field(
        default=None, alias="setHostnameAsFQDN"
    )
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    scheduler_name: Annotated[object, _PLACEMENT] = None
    enable_service_links: Annotated[
        object, Ignore("<NAME>_SERVICE_HOST/_PORT are always set; the Docker-link variables never are")
    ] = None
    overhead: Annotated[object, _API_SERVER] = None
    os: Annotated[object, Ignore("containers here run on Linux")] = None


class PodTemplateSpec(KubeModel):
    """spec.template."""

    metadata: TemplateMeta = TemplateMeta()
    spec: PodSpec


# --- controllers ------------------------------------------------------------------------------


class LabelSelectorRequirement(KubeModel):
    """selector.matchExpressions[]."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if ``labels`` meet this requirement."""
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside


class LabelSelector(KubeModel):
    """spec.selector, or the labelSelector of a pod affinity term or spread constraint."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def selects(self, labels: Mapping[str, str]) -> bool:
        """True if ``labels`` meet every matchLabels entry and matchExpressions requirement."""
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


class RollingUpdate(KubeModel):
    """strategy.rollingUpdate / updateStrategy.rollingUpdate."""

    max_unavailable: IntOrPercent | None = None
    max_surge: IntOrPercent | None = None


class DeploymentStrategy(KubeModel):
    """Deployment spec.strategy."""

    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate | None = None


class DaemonSetUpdateStrategy(KubeModel):
    """DaemonSet spec.updateStrategy."""

    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: RollingUpdate | None = None


_HISTORY = Ignore("old revisions live in Git history")
Replicas = Annotated[int, Field(ge=0, le=1000)]


class DeploymentSpec(KubeModel):
    """Deployment spec."""

    replicas: Replicas = 1
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = DeploymentStrategy()
    min_ready_seconds: Seconds = 0
    progress_deadline_seconds: PositiveSeconds = 600
    revision_history_limit: Annotated[object, _HISTORY] = None
    paused: Annotated[
        bool | None, refuse_when(bool, "paused rollouts are not supported; hold the commit back instead")
    ] = None


class DaemonSetSpec(KubeModel):
    """DaemonSet spec."""

    selector: LabelSelector
    template: PodTemplateSpec
    update_strategy: DaemonSetUpdateStrategy = DaemonSetUpdateStrategy()
    min_ready_seconds: Seconds = 0
    revision_history_limit: Annotated[object, _HISTORY] = None


def _exit_codes(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError("values must be unique")
    return sorted(values)


class PodFailurePolicyOnExitCodesRequirement(KubeModel):
    """podFailurePolicy.rules[].onExitCodes."""

    container_name: Label | None = None
    operator: Literal["In", "NotIn"]
    values: Annotated[
        list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1, max_length=255), checked(_exit_codes)
    ]

    @model_validator(mode="after")
    def _zero_is_success(self) -> PodFailurePolicyOnExitCodesRequirement:
        if self.operator == "In" and 0 in self.values:
            raise ValueError("the In operator cannot match exit code 0: a container that exits 0 has succeeded")
        return self


class PodFailurePolicyOnPodConditionsPattern(KubeModel):
    """podFailurePolicy.rules[].onPodConditions[]."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    status: Literal["True", "False", "Unknown"] = "True"


class PodFailurePolicyRule(KubeModel):
    """podFailurePolicy.rules[]: exactly one of onExitCodes and onPodConditions."""

    action: Literal["FailJob", "FailIndex", "Ignore", "Count"]
    on_exit_codes: PodFailurePolicyOnExitCodesRequirement | None = None
    on_pod_conditions: Annotated[list[PodFailurePolicyOnPodConditionsPattern], Field(max_length=20)] | None = None

    @model_validator(mode="after")
    def _one_requirement(self) -> PodFailurePolicyRule:
        if (self.on_exit_codes is None) == (self.on_pod_conditions is None):
            raise ValueError("set exactly one of onExitCodes and onPodConditions")
        return self


class PodFailurePolicy(KubeModel):
    """Job spec.podFailurePolicy."""

    rules: Annotated[list[PodFailurePolicyRule], Field(max_length=20)]


class JobSpec(KubeModel):
    """Job spec, or a CronJob's jobTemplate.spec."""

    template: PodTemplateSpec
    completions: Annotated[int, Field(ge=1, le=1000)] | None = None
    parallelism: Annotated[int, Field(ge=1, le=1000)] | None = None
    backoff_limit: Count = 6
    active_deadline_seconds: PositiveSeconds | None = None
    completion_mode: Literal["NonIndexed", "Indexed"] = "NonIndexed"
    suspend: bool = False
    ttl_seconds_after_finished: Seconds | None = None
    pod_failure_policy: PodFailurePolicy | None = None
    pod_replacement_policy: Annotated[object, Ignore("a failed pod is replaced once it has stopped")] = None
    backoff_limit_per_index: Count | None = None
    max_failed_indexes: Count | None = None
    success_policy: Annotated[object, Refuse("successPolicy is not evaluated; remove it")] = None
    selector: Annotated[object, Refuse("Jobs select their own pods; remove spec.selector")] = None
    manual_selector: Annotated[object, Refuse("Jobs select their own pods; remove manualSelector")] = None
    managed_by: Annotated[object, Refuse("Jobs here are managed by gitops; remove managedBy")] = None


class JobTemplateSpec(KubeModel):
    """CronJob spec.jobTemplate."""

    metadata: TemplateMeta = TemplateMeta()
    spec: JobSpec


class CronJobSpec(KubeModel):
    """CronJob spec."""

    schedule: Annotated[str, checked(cron.validate_schedule)]
    time_zone: Annotated[str, checked(cron.validate_time_zone)] = "UTC"
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    starting_deadline_seconds: Seconds | None = None
    successful_jobs_history_limit: Count = 3
    failed_jobs_history_limit: Count = 1
    suspend: bool = False
    job_template: JobTemplateSpec


class Deployment(KubeModel):
    """apps/v1 Deployment."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: Annotated[object, _API_SERVER] = None


class DaemonSet(KubeModel):
    """apps/v1 DaemonSet."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: DaemonSetSpec
    status: Annotated[object, _API_SERVER] = None


class Job(KubeModel):
    """batch/v1 Job."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: JobSpec
    status: Annotated[object, _API_SERVER] = None


class CronJob(KubeModel):
    """batch/v1 CronJob."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: CronJobSpec
    status: Annotated[object, _API_SERVER] = None


# --- ConfigMap --------------------------------------------------------------------------------


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("binaryData values must be base64") from None
    return value


class ConfigMap(KubeModel):
    """v1 ConfigMap: values the repository's workloads read as env, envFrom and files."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    # null is an empty map, as in Kubernetes (generated manifests write `data: null`).
    data: dict[DataKey, str] | None = None
    binary_data: dict[DataKey, Annotated[str, checked(_base64)]] | None = None
    immutable: bool = False

    @model_validator(mode="after")
    def _keys_unique(self) -> ConfigMap:
        both = sorted(set(self.data or {}) & set(self.binary_data or {}))
        if both:
            raise ValueError(f"key '{both[0]}' is in both data and binaryData; keep one")
        return self


# --- PersistentVolumeClaim -------------------------------------------------------------------

_ONE_NODE = "volumes here live on one node's disk"


class ClaimRequests(KubeModel):
    """PersistentVolumeClaim spec.resources.requests."""

    storage: StorageBytes


class ClaimResources(KubeModel):
    """PersistentVolumeClaim spec.resources."""

    requests: ClaimRequests
    limits: Annotated[object, Ignore(f"{_ONE_NODE}, with no size limit")] = None


class PersistentVolumeClaimSpec(KubeModel):
    """PersistentVolumeClaim spec."""

    access_modes: Annotated[
        list[
            Annotated[
                Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany", "ReadWriteMany"],
                refuse_when(
                    lambda m: m in ("ReadOnlyMany", "ReadWriteMany"),
                    f"{_ONE_NODE}, so only one node can mount them; use ReadWriteOnce",
                ),
            ]
        ],
        Field(min_length=1),
    ]
    resources: ClaimResources
    # Names a node-local setting; every class is Docker's local driver on the node's disk here.
    storage_class_name: Label | None = None
    volume_mode: Annotated[
        Literal["Filesystem", "Block"] | None,
        refuse_when(lambda m: m == "Block", "raw block volumes are not supported; use volumeMode: Filesystem"),
    ] = None
    volume_name: Annotated[object, Refuse(f"there are no PersistentVolumes; {_ONE_NODE}: remove volumeName")] = None
    selector: Annotated[object, Refuse(f"there are no PersistentVolumes to select; {_ONE_NODE}: remove it")] = None
    data_source: Annotated[object, Refuse("volumes start empty here; restore data into the volume instead")] = None
    data_source_ref: Annotated[object, Refuse("volumes start empty here; restore data into the volume instead")] = None
    volume_attributes_class_name: Annotated[object, Ignore("volume attribute classes are not applied")] = None


class PersistentVolumeClaim(KubeModel):
    """v1 PersistentVolumeClaim: a node-local named Docker volume, created where its first user is placed."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: PersistentVolumeClaimSpec
    status: Annotated[object, _API_SERVER] = None


# --- Service ----------------------------------------------------------------------------------

NodePort = Annotated[int, Field(ge=30000, le=32767)]
_SERVICE_IPV4 = Ignore("Services here are IPv4 only")
_NO_CLOUD = Ignore("there is no cloud load balancer; a LoadBalancer is served as a NodePort on every node")


class ServicePort(KubeModel):
    """Service spec.ports[]."""

    name: PortName | None = None
    protocol: Annotated[
        Literal["TCP", "UDP", "SCTP"], refuse_when(lambda p: p == "SCTP", "SCTP is not supported; use TCP or UDP")
    ] = "TCP"
    port: Port
    target_port: PortRef | None = None
    node_port: NodePort | None = None
    app_protocol: Annotated[object, Ignore("traffic is forwarded at layer 4 whatever the protocol")] = None


def _local_policy(field: str) -> AfterValidator:
    return refuse_when(lambda p: p == "Local", f"{field} Local is not supported; remove it (Cluster applies)")


class ServiceSpec(KubeModel):
    """Service spec."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: list[ServicePort] = Field(default_factory=list)
    # "None" is headless; an address pins the virtual IP (it must lie in the Cluster's serviceCidr).
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: Annotated[object, Refuse("set clusterIP instead of clusterIPs")] = Field(
        default=None, alias="clusterIPs"
    )
    external_name: str | None = None
    session_affinity: Literal["None", "ClientIP"] = "None"
    session_affinity_config: Annotated[
        object, Ignore("affinity hashes the client address, so it lasts while the endpoints stay the same; no timeout")
    ] = None
    publish_not_ready_addresses: bool = False
    external_traffic_policy: Annotated[Literal["Cluster", "Local"], _local_policy("externalTrafficPolicy")] = "Cluster"
    internal_traffic_policy: Annotated[Literal["Cluster", "Local"], _local_policy("internalTrafficPolicy")] = "Cluster"
    external_ips: Annotated[object, Refuse("externalIPs are not routed; use a NodePort on the node addresses")] = Field(
        default=None, alias="externalIPs"
    )
    ip_families: Annotated[object, _SERVICE_IPV4] = None
    ip_family_policy: Annotated[object, _SERVICE_IPV4] = None
    load_balancer_ip: Annotated[object, _NO_CLOUD] = Field(default=None, alias="loadBalancerIP")
    load_balancer_class: Annotated[object, _NO_CLOUD] = None
    load_balancer_source_ranges: Annotated[
        object, Refuse("source ranges are not enforced; remove loadBalancerSourceRanges or filter on the hosts")
    ] = None
    allocate_load_balancer_node_ports: Annotated[object, _NO_CLOUD] = None
    health_check_node_port: Annotated[object, _NO_CLOUD] = None
    traffic_distribution: Annotated[object, Ignore("endpoints on every node are weighted equally")] = None


class Service(KubeModel):
    """v1 Service: a stable name, virtual IP and ports in front of the ready replicas its selector matches."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: ServiceSpec = ServiceSpec()
    status: Annotated[object, _API_SERVER] = None


# --- gitops/v1 Cluster ------------------------------------------------------------------------


class ClusterMeta(KubeModel):
    """metadata of the Cluster document."""

    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


def _service_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an IPv4 network such as 10.96.0.0/16") from None
    if not 12 <= network.prefixlen <= 28:
        raise ValueError(f"serviceCidr must be between /12 and /28 (got /{network.prefixlen})")
    return str(network)


class ClusterSpec(KubeModel):
    """gitops/v1 Cluster spec."""

    heartbeat_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    node_timeout_seconds: Annotated[int, Field(ge=2, le=86400)] = 30
    cordoned: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(default_factory=list)
    service_cidr: Annotated[str, checked(_service_cidr)] = "10.96.0.0/16"

    @model_validator(mode="after")
    def _timeout_covers_heartbeats(self) -> ClusterSpec:
        if self.node_timeout_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                f"nodeTimeoutSeconds ({self.node_timeout_seconds}) must be at least twice heartbeatSeconds "
                f"({self.heartbeat_seconds}), or one late heartbeat drops a node"
            )
        return self


class Cluster(KubeModel):
    """gitops/v1 Cluster."""

    api_version: str
    kind: str
    metadata: ClusterMeta = ClusterMeta()
    spec: ClusterSpec = ClusterSpec()


# --- StatefulSet ------------------------------------------------------------------------------


class ClaimTemplateMeta(KubeModel):
    """volumeClaimTemplates[].metadata."""

    name: Label
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PersistentVolumeClaimTemplate(KubeModel):
    """StatefulSet spec.volumeClaimTemplates[]: one claim per replica, ``<name>-<statefulset>-<ordinal>``."""

    api_version: Annotated[object, Ignore("a volumeClaimTemplate is always a v1 PersistentVolumeClaim")] = None
    kind: Annotated[object, Ignore("a volumeClaimTemplate is always a v1 PersistentVolumeClaim")] = None
    metadata: ClaimTemplateMeta
    spec: PersistentVolumeClaimSpec
    status: Annotated[object, _API_SERVER] = None


class RollingUpdateStatefulSetStrategy(KubeModel):
    """StatefulSet spec.updateStrategy.rollingUpdate."""

    partition: Replicas = 0
    max_unavailable: Annotated[
        object, refuse_when(lambda v: v not in (None, 1), "replicas are updated one at a time; remove maxUnavailable")
    ] = None


class StatefulSetUpdateStrategy(KubeModel):
    """StatefulSet spec.updateStrategy."""

    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: RollingUpdateStatefulSetStrategy | None = None


class StatefulSetRetentionPolicy(KubeModel):
    """StatefulSet spec.persistentVolumeClaimRetentionPolicy."""

    when_deleted: Literal["Retain", "Delete"] = "Retain"
    when_scaled: Literal["Retain", "Delete"] = "Retain"


class StatefulSetOrdinals(KubeModel):
    """StatefulSet spec.ordinals."""

    start: Annotated[int, refuse_when(bool, "ordinals start at 0 here; remove ordinals.start")] = 0


class StatefulSetSpec(KubeModel):
    """StatefulSet spec."""

    replicas: Replicas = 1
    selector: LabelSelector
    template: PodTemplateSpec
    service_name: Annotated[
        object, Ignore("per-replica names (web-0.SERVICE) come from each headless Service selecting the pods")
    ] = None
    volume_claim_templates: list[PersistentVolumeClaimTemplate] = Field(default_factory=list)
    pod_management_policy: Literal["OrderedReady", "Parallel"] = "OrderedReady"
    update_strategy: StatefulSetUpdateStrategy = StatefulSetUpdateStrategy()
    persistent_volume_claim_retention_policy: StatefulSetRetentionPolicy = StatefulSetRetentionPolicy()
    min_ready_seconds: Seconds = 0
    ordinals: StatefulSetOrdinals | None = None
    revision_history_limit: Annotated[object, _HISTORY] = None


class StatefulSet(KubeModel):
    """apps/v1 StatefulSet."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: StatefulSetSpec
    status: Annotated[object, _API_SERVER] = None


class VolumeReleaseSpec(KubeModel):
    """gitops/v1 VolumeRelease spec."""

    nodes: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(min_length=1)]


class VolumeRelease(KubeModel):
    """gitops/v1 VolumeRelease: the volumes of claim ``metadata.name`` on ``spec.nodes`` no longer pin its users."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: VolumeReleaseSpec


# --- HorizontalPodAutoscaler ------------------------------------------------------------------

_MEASURED = f"only cpu and memory (Resource) and {' and '.join(POD_METRICS)} (Pods) are measured here"


class CrossVersionObjectReference(KubeModel):
    """HorizontalPodAutoscaler spec.scaleTargetRef: a workload in the autoscaler's namespace."""

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Annotated[
        str,
        refuse_when(
            lambda k: k not in ("Deployment", "StatefulSet"), "only a Deployment or StatefulSet (apps/v1) can be scaled"
        ),
    ]
    name: Label


class MetricTarget(KubeModel):
    """metrics[].resource.target, metrics[].pods.target: a utilization of requests in percent or an average."""

    type: Annotated[
        Literal["Utilization", "AverageValue", "Value"],
        refuse_when(
            lambda t: t == "Value", "Value targets are for Object and External metrics; use Utilization or AverageValue"
        ),
    ]
    average_utilization: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # A cpu or memory quantity; converted by the resource's name in autoscaler.py.
    average_value: str | int | float | None = None
    value: Annotated[object, Refuse("Value targets are for Object and External metrics; use AverageValue")] = None

    @model_validator(mode="after")
    def _one_target(self) -> MetricTarget:
        wanted = "averageUtilization" if self.type == "Utilization" else "averageValue"
        have = self.average_utilization if self.type == "Utilization" else self.average_value
        if have is None:
            raise ValueError(f"target type {self.type} needs {wanted}")
        return self


class ResourceMetricSource(KubeModel):
    """metrics[].resource."""

    name: Annotated[str, refuse_when(lambda n: n not in ("cpu", "memory"), f"{_MEASURED}: use cpu or memory")]
    target: MetricTarget


class MetricIdentifier(KubeModel):
    """metrics[].pods.metric: one of the Pods metrics this project measures."""

    name: Annotated[
        str, refuse_when(lambda n: n not in POD_METRICS, f"unknown Pods metric; supported: {', '.join(POD_METRICS)}")
    ]
    selector: Annotated[object, Refuse("metric selectors are not supported; remove selector")] = None


class PodsMetricSource(KubeModel):
    """metrics[].pods: a metric averaged over the target's replicas."""

    metric: MetricIdentifier
    target: MetricTarget

    @model_validator(mode="after")
    def _average_value(self) -> PodsMetricSource:
        if self.target.type != "AverageValue":
            raise ValueError("a Pods metric needs an AverageValue target (Kubernetes accepts no other)")
        return self


class MetricSpec(KubeModel):
    """HorizontalPodAutoscaler spec.metrics[]."""

    type: Literal["Resource", "Pods", "Object", "External", "ContainerResource"]
    resource: ResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object_: Annotated[object, Refuse(f"Object metrics need a metrics API; {_MEASURED}")] = Field(
        default=None, alias="object"
    )
    external: Annotated[object, Refuse(f"External metrics need a metrics API; {_MEASURED}")] = None
    container_resource: Annotated[
        object, Refuse("per-container metrics are not measured; use a Resource metric of the whole replica")
    ] = None

    @model_validator(mode="after")
    def _resource(self) -> MetricSpec:
        if self.type not in ("Resource", "Pods"):
            raise ValueError(f"{self.type} metrics are not supported; {_MEASURED} (type: Resource or Pods)")
        if self.type == "Resource" and self.resource is None:
            raise ValueError("a Resource metric needs resource: {name: cpu, target: ...}")
        if self.type == "Pods" and self.pods is None:
            raise ValueError("a Pods metric needs pods: {metric: {name: gpu_utilization}, target: ...}")
        return self


class HPAScalingPolicy(KubeModel):
    """behavior.scaleUp/scaleDown.policies[]."""

    type: Literal["Pods", "Percent"]
    value: Annotated[int, Field(ge=1, le=100_000)]
    period_seconds: Annotated[int, Field(ge=1, le=1800)]


class HPAScalingRules(KubeModel):
    """behavior.scaleUp / behavior.scaleDown; unset fields take Kubernetes' defaults for the direction."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = None
    tolerance: Annotated[object, Refuse("a per-direction tolerance is not supported; the 10 % tolerance applies")] = (
        None
    )


class HorizontalPodAutoscalerBehavior(KubeModel):
    """HorizontalPodAutoscaler spec.behavior."""

    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


class _ScaleBounds(KubeModel):
    """What both HorizontalPodAutoscaler versions share: the target and the replica bounds."""

    scale_target_ref: CrossVersionObjectReference
    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)]

    @model_validator(mode="after")
    def _bounds(self) -> _ScaleBounds:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})")
        return self


class HorizontalPodAutoscalerSpec(_ScaleBounds):
    """autoscaling/v2 HorizontalPodAutoscaler spec."""

    metrics: list[MetricSpec] | None = None
    behavior: HorizontalPodAutoscalerBehavior | None = None


class HorizontalPodAutoscalerSpecV1(_ScaleBounds):
    """autoscaling/v1 HorizontalPodAutoscaler spec."""

    target_cpu_utilization_percentage: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None, alias="targetCPUUtilizationPercentage"
    )


class HorizontalPodAutoscaler(KubeModel):
    """autoscaling/v2 HorizontalPodAutoscaler."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpec
    status: Annotated[object, _API_SERVER] = None


class HorizontalPodAutoscalerV1(KubeModel):
    """autoscaling/v1 HorizontalPodAutoscaler."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpecV1
    status: Annotated[object, _API_SERVER] = None


WORKLOAD_MODELS: dict[str, tuple[str, type[Deployment | DaemonSet | Job | CronJob | StatefulSet]]] = {
    "StatefulSet": ("apps/v1", StatefulSet),
    "Deployment": ("apps/v1", Deployment),
    "DaemonSet": ("apps/v1", DaemonSet),
    "Job": ("batch/v1", Job),
    "CronJob": ("batch/v1", CronJob),
}
