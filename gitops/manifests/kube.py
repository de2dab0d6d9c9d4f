"""The Kubernetes subset gitops reads, as strict pydantic models named after the Kubernetes types.

Each field is supported (typed), ``Ignored`` (dropped with a warning) or ``Refuse``d
(an error naming what to do). Checks that involve several fields live in
``pod.py`` and ``workload.py``; these models only check each value on its own.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gitops.manifests import cron, quantity
from gitops.manifests.fields import (
    AbsolutePath,
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
    Port,
    PortName,
    PortRef,
    PositiveSeconds,
    Refuse,
    RelativePath,
    Seconds,
    Uid,
    checked,
    refusal,
    refuse_when,
)

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
    generate_name: Annotated[object, Refuse("set metadata.name: gitops needs a stable name to track a workload")] = None
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


class SecretKeySelector(KubeModel):
    """env[].valueFrom.secretKeyRef: read on the node from <secrets-dir>/<namespace>/<name>/<key>."""

    name: Label
    key: Annotated[str, Field(min_length=1, pattern=r"^[-._a-zA-Z0-9]+$")]
    optional: bool = False


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
    config_map_key_ref: Annotated[
        object, Refuse("ConfigMaps are not read; write the value under env[].value, or use a secretKeyRef")
    ] = None
    resource_field_ref: ResourceFieldSelector | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        if sum(s is not None for s in (self.secret_key_ref, self.field_ref, self.resource_field_ref)) > 1:
            raise ValueError("set exactly one of secretKeyRef, fieldRef and resourceFieldRef")
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
    mount_propagation: Annotated[
        str | None,
        refuse_when(lambda mode: mode != "None", "mount propagation is not applied; remove it (the default is None)"),
    ] = None
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
    """securityContext.capabilities."""

    add: Annotated[
        object, Refuse("adding capabilities is not applied; remove capabilities.add or run the image as is")
    ] = None
    drop: list[str] = Field(default_factory=list)


class SeccompProfile(KubeModel):
    """securityContext.seccompProfile: Docker's default profile is RuntimeDefault."""

    type: Annotated[
        Literal["RuntimeDefault", "Unconfined", "Localhost"],
        refuse_when(lambda t: t != "RuntimeDefault", "only seccompProfile type RuntimeDefault (Docker's) is applied"),
    ]
    localhost_profile: str | None = None


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
    privileged: Annotated[
        bool | None,
        refuse_when(bool, "privileged containers are not run from Git; remove privileged or set it to false"),
    ] = None
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
    env_from: Annotated[
        object, Refuse("envFrom is not supported; list each variable under env with value or secretKeyRef")
    ] = None
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


class EmptyDirVolumeSource(KubeModel):
    """volumes[].emptyDir: a Docker volume that lives as long as the replica."""

    medium: Literal["", "Memory"] = ""
    size_limit: Annotated[object, Ignore("Docker volumes have no size limit here")] = None


def _volume_type(name: str, what_to_do: str) -> Refuse:
    return Refuse(f"{name} volumes are not supported; {what_to_do}")


_BAKE = "bake the files into the image, or use a hostPath on the nodes"


class Volume(KubeModel):
    """volumes[]."""

    name: Label
    host_path: HostPathVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: Annotated[object, _volume_type("configMap", _BAKE)] = None
    secret: Annotated[object, _volume_type("secret", "use env valueFrom.secretKeyRef, or a hostPath")] = None
    persistent_volume_claim: Annotated[object, _volume_type("persistentVolumeClaim", "use a hostPath")] = None
    projected: Annotated[object, _volume_type("projected", _BAKE)] = None
    downward_api: Annotated[object, _volume_type("downwardAPI", "write the values under env[].value")] = Field(
        default=None, alias="downwardAPI"
    )
    nfs: Annotated[object, _volume_type("nfs", "mount NFS on the nodes and use a hostPath")] = None
    csi: Annotated[object, _volume_type("csi", "use a hostPath")] = None
    ephemeral: Annotated[object, _volume_type("ephemeral", "use an emptyDir")] = None
    image: Annotated[object, _volume_type("image", "copy the files in the image build instead")] = None

    @model_validator(mode="after")
    def _one_type(self) -> Volume:
        if (self.host_path is None) == (self.empty_dir is None):
            raise ValueError(f"volume '{self.name}' needs exactly one of hostPath and emptyDir")
        return self


# --- pods -------------------------------------------------------------------------------------


class PodSecurityContext(KubeModel):
    """spec.template.spec.securityContext: defaults for every container."""

    run_as_user: Uid | None = None
    run_as_group: Uid | None = None
    run_as_non_root: bool | None = None
    fs_group: Uid | None = None
    fs_group_change_policy: Annotated[object, Ignore("volume ownership is not changed")] = None
    supplemental_groups: Annotated[
        object, Refuse("supplementalGroups are not applied; give the needed group as runAsGroup")
    ] = None
    supplemental_groups_policy: Annotated[object, Ignore("supplementalGroups are not used")] = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None
    se_linux_options: Annotated[object, _SE_LINUX] = None
    se_linux_change_policy: Annotated[object, Ignore("SELinux labels are not managed")] = None
    sysctls: Annotated[object, Refuse("sysctls are not applied; set them on the nodes")] = None
    windows_options: Annotated[object, _WINDOWS] = None


class NodeAffinity(KubeModel):
    """affinity.nodeAffinity."""

    required_during_scheduling_ignored_during_execution: Annotated[
        object, Refuse("required node affinity is not honoured; express it as nodeSelector labels")
    ] = None
    preferred_during_scheduling_ignored_during_execution: Annotated[object, _PLACEMENT] = None


class PodAffinity(KubeModel):
    """affinity.podAffinity / affinity.podAntiAffinity."""

    required_during_scheduling_ignored_during_execution: Annotated[
        object,
        Refuse(
            "required pod (anti-)affinity is not honoured; remove it (replicas of one workload "
            "are already spread over nodes where they fit)"
        ),
    ] = None
    preferred_during_scheduling_ignored_during_execution: Annotated[object, _PLACEMENT] = None


class Affinity(KubeModel):
    """spec.template.spec.affinity."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


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
    host_pid: Annotated[object, Refuse("sharing the host's process namespace is not applied; remove hostPID")] = Field(
        default=None, alias="hostPID"
    )
    host_ipc: Annotated[object, Refuse("sharing the host's IPC namespace is not applied; remove hostIPC")] = Field(
        default=None, alias="hostIPC"
    )
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
    tolerations: Annotated[object, Ignore("nodes here have no taints; cordon nodes in the Cluster manifest")] = None
    topology_spread_constraints: Annotated[object, _PLACEMENT] = None
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
    image_pull_secrets: Annotated[object, Ignore("log in the node's Docker to the registry instead")] = None
    scheduler_name: Annotated[object, _PLACEMENT] = None
    enable_service_links: Annotated[object, Ignore("there are no Services to link")] = None
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


class LabelSelector(KubeModel):
    """spec.selector."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


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


class JobSpec(KubeModel):
    """Job spec, or a CronJob's jobTemplate.spec."""

    template: PodTemplateSpec
    completions: Annotated[int, Field(ge=1, le=1000)] | None = None
    parallelism: Annotated[int, Field(ge=1, le=1000)] | None = None
    backoff_limit: Count = 6
    active_deadline_seconds: PositiveSeconds | None = None
    completion_mode: Annotated[
        Literal["NonIndexed", "Indexed"],
        refuse_when(
            lambda mode: mode == "Indexed",
            "Indexed completion mode is not supported (no JOB_COMPLETION_INDEX); remove completionMode",
        ),
    ] = "NonIndexed"
    suspend: Annotated[
        bool | None, refuse_when(bool, "suspended Jobs never start here; remove suspend or set it to false")
    ] = None
    ttl_seconds_after_finished: Annotated[object, Ignore("finished Jobs are kept until Git removes them")] = None
    pod_failure_policy: Annotated[
        object,
        Refuse("podFailurePolicy is not evaluated; rely on backoffLimit, or handle exit codes in the command"),
    ] = None
    pod_replacement_policy: Annotated[object, Ignore("a failed pod is replaced once it has stopped")] = None
    backoff_limit_per_index: Annotated[object, Refuse("per-index backoff needs Indexed Jobs; remove it")] = None
    max_failed_indexes: Annotated[object, Refuse("per-index backoff needs Indexed Jobs; remove it")] = None
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


# --- gitops/v1 Cluster ------------------------------------------------------------------------


class ClusterMeta(KubeModel):
    """metadata of the Cluster document."""

    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ClusterSpec(KubeModel):
    """gitops/v1 Cluster spec."""

    heartbeat_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    node_timeout_seconds: Annotated[int, Field(ge=2, le=86400)] = 30
    cordoned: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(default_factory=list)

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


WORKLOAD_MODELS: dict[str, tuple[str, type[Deployment | DaemonSet | Job | CronJob]]] = {
    "Deployment": ("apps/v1", Deployment),
    "DaemonSet": ("apps/v1", DaemonSet),
    "Job": ("batch/v1", Job),
    "CronJob": ("batch/v1", CronJob),
}
