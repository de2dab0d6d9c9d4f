"""The Kubernetes subset gitops reads, as strict pydantic models named after the Kubernetes types.

Each field is supported (typed), ``Ignored`` (dropped with a warning) or ``Refuse``d
(an error naming what to do). Checks that involve several fields live in
``pod.py`` and ``workload.py``; these models only check each value on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gitops.manifests import cron
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
            f"annotation '{legacy[0]}' declares init containers, which are not run; "
            "fold the step into the container's command or run it as a separate Job"
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


class ObjectFieldSelector(KubeModel):
    """env[].valueFrom.fieldRef: only the namespace has a value outside Kubernetes."""

    field_path: Annotated[
        str,
        refuse_when(
            lambda path: path != "metadata.namespace",
            "only fieldRef metadata.namespace can be resolved outside Kubernetes; "
            "write the value you need under env[].value",
        ),
    ]
    api_version: str = "v1"


class EnvVarSource(KubeModel):
    """env[].valueFrom."""

    secret_key_ref: SecretKeySelector | None = None
    field_ref: ObjectFieldSelector | None = None
    config_map_key_ref: Annotated[
        object, Refuse("ConfigMaps are not read; write the value under env[].value, or use a secretKeyRef")
    ] = None
    resource_field_ref: Annotated[
        object, Refuse("resource values are not exposed to containers; write the value under env[].value")
    ] = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        if self.secret_key_ref is not None and self.field_ref is not None:
            raise ValueError("set exactly one of secretKeyRef and fieldRef")
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


class Probe(KubeModel):
    """livenessProbe / readinessProbe / startupProbe."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: Annotated[
        object,
        Refuse("gRPC probes are not supported; use an exec probe running grpc_health_probe, or tcpSocket"),
    ] = None
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
        if sum(h is not None for h in (self.exec, self.http_get, self.tcp_socket)) != 1:
            raise ValueError("a probe needs exactly one of exec, httpGet and tcpSocket")
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
    lifecycle: Annotated[
        object,
        Refuse("lifecycle hooks are not run; do postStart work in the command and handle SIGTERM for shutdown"),
    ] = None
    termination_message_path: Annotated[object, Ignore("exit status and logs are reported instead")] = None
    termination_message_policy: Annotated[object, Ignore("exit status and logs are reported instead")] = None
    stdin: Annotated[object, Ignore("containers here get no attached stdin")] = None
    stdin_once: Annotated[object, Ignore("containers here get no attached stdin")] = None
    tty: Annotated[object, Ignore("containers here get no terminal")] = None
    resize_policy: Annotated[object, Ignore("resources change by a new commit, which replaces the container")] = None
    volume_devices: Annotated[object, Refuse("raw block devices are not supported; remove volumeDevices")] = None
    restart_policy: Annotated[
        object, Refuse("per-container restartPolicy is for sidecar init containers, which are not supported")
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
    init_containers: Annotated[
        object,
        Refuse("initContainers are not run; fold the step into the container's command, or run it as a separate Job"),
    ] = None
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
