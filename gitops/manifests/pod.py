"""Turning a validated Kubernetes pod template into the resolved ``gitops.model.PodSpec``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gitops import model
from gitops.downward import reads_pod_ip
from gitops.manifests import configmaps, fieldrefs, kube
from gitops.manifests.expansion import SecretReference, expand, refers_to, template
from gitops.manifests.fields import IPC_SYSCTLS
from gitops.manifests.issues import Issues
from gitops.manifests.yamlsafe import Path

_DEFAULT_GRACE_S = 30


@dataclass(frozen=True)
class PodContext:
    """What the pod conversion needs to know about the workload around it."""

    kind: model.WorkloadKind
    namespace: str
    # The pod template's metadata, for fieldRef metadata.labels['k'] / annotations['k'].
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def convert_pod(pod: kube.PodSpec, ctx: PodContext, issues: Issues, path: Path) -> model.PodSpec | None:
    """The resolved pod spec, or None after recording why it cannot be run faithfully."""
    before = len(issues.errors)
    restart = _restart_policy(pod.restart_policy, ctx.kind, issues, (*path, "restartPolicy"))
    volumes = _volumes(pod, issues, path)
    seen: dict[str, str] = {}
    inits = _containers("initContainers", pod, volumes, ctx, seen, issues, path)
    containers = _containers("containers", pod, volumes, ctx, seen, issues, path)
    _check_host_ports(
        [((*path, "initContainers", i), c) for i, c in enumerate(inits)]
        + [((*path, "containers", i), c) for i, c in enumerate(containers)],
        issues,
    )
    files = (configmaps.file_volume(v, issues, (*path, "volumes", i)) for i, v in enumerate(pod.volumes))
    if len(issues.errors) > before:
        return None
    return model.PodSpec(
        containers=tuple(containers),
        init_containers=tuple(inits),
        restart_policy=restart,
        termination_grace_s=(
            _DEFAULT_GRACE_S if pod.termination_grace_period_seconds is None else pod.termination_grace_period_seconds
        ),
        host_network=pod.host_network,
        image_pull_secrets=tuple(ref.name for ref in pod.image_pull_secrets),
        files=tuple(f for f in files if f is not None),
        host_pid=pod.host_pid,
        host_ipc=pod.host_ipc,
        sysctls=_sysctls(pod, issues, (*path, "securityContext", "sysctls")),
        fs_group=pod.security_context.fs_group if pod.security_context else None,
    )


def _containers(
    field: str,
    pod: kube.PodSpec,
    volumes: dict[str, kube.Volume],
    ctx: PodContext,
    seen: dict[str, str],
    issues: Issues,
    path: Path,
) -> list[model.ContainerSpec]:
    out = []
    for index, container in enumerate(pod.init_containers if field == "initContainers" else pod.containers):
        cpath = (*path, field, index)
        if container.name in seen:
            issues.error(
                (*cpath, "name"), f"container name '{container.name}' is already used by {seen[container.name]}"
            )
        seen.setdefault(container.name, f"{field}[{index}]")
        spec = _container(container, pod, volumes, ctx, issues, cpath)
        if field == "initContainers":
            _check_init(spec, issues, cpath)
        elif spec.restart_policy is not None:
            issues.error(
                (*cpath, "restartPolicy"),
                "only init containers take restartPolicy Always (a native sidecar)",
                "remove it, or move the container to initContainers to run it as a sidecar",
            )
        out.append(spec)
    return out


def _check_init(spec: model.ContainerSpec, issues: Issues, path: Path) -> None:
    """Kubernetes' rules for init containers, and what Docker cannot give them."""
    if spec.gpus:
        issues.error((*path, "resources", "limits", "nvidia.com/gpu"), "GPUs go to app containers only; remove it")
    if spec.restart_policy == "Always":
        return
    for name, present in (
        ("lifecycle", spec.hooks is not None),
        ("livenessProbe", spec.liveness is not None),
        ("readinessProbe", spec.readiness is not None),
        ("startupProbe", spec.startup is not None),
    ):
        if present:
            issues.error(
                (*path, name),
                "an init container runs to completion, so it takes no probes or hooks",
                "remove it, or set restartPolicy: Always to run the container as a native sidecar",
            )
    for index, port in enumerate(spec.ports):
        if port.host_port is not None:
            issues.error((*path, "ports", index, "hostPort"), "an init container publishes no ports; remove hostPort")
    if reads_pod_ip(spec):
        issues.error(
            (*path, "env"),
            "an init container runs before the pod's network exists, so status.podIP has no value for it",
            "use status.hostIP, or run the step as a native sidecar (restartPolicy: Always)",
        )


def _restart_policy(
    value: model.RestartPolicy | None, kind: model.WorkloadKind, issues: Issues, path: Path
) -> model.RestartPolicy:
    if kind in ("Deployment", "DaemonSet", "StatefulSet"):
        if value not in (None, "Always"):
            issues.error(path, f"a {kind} keeps its containers running, so restartPolicy must be Always", "remove it")
        return "Always"
    if value is None or value == "Always":
        issues.error(path, "a Job's pods need restartPolicy OnFailure or Never", "add restartPolicy: OnFailure")
        return "OnFailure"
    return value


def _volumes(pod: kube.PodSpec, issues: Issues, path: Path) -> dict[str, kube.Volume]:
    volumes: dict[str, kube.Volume] = {}
    for index, volume in enumerate(pod.volumes):
        vpath = (*path, "volumes", index)
        if volume.name in volumes:
            issues.error((*vpath, "name"), f"volume name '{volume.name}' is used twice")
        volumes[volume.name] = volume
        if volume.empty_dir is not None and volume.empty_dir.medium == "Memory":
            issues.warn(
                (*vpath, "emptyDir", "medium"),
                "Memory is not applied: the emptyDir is a Docker volume on disk",
            )
    return volumes


def _container(
    container: kube.Container,
    pod: kube.PodSpec,
    volumes: dict[str, kube.Volume],
    ctx: PodContext,
    issues: Issues,
    path: Path,
) -> model.ContainerSpec:
    env, values, secrets, nodes = _env(container, pod, ctx, issues, path)
    node_expanded = tuple(
        name
        for name, items in (("command", container.command), ("args", container.args))
        if items and any(refers_to(item, nodes) for item in items)
    )
    ports = tuple(
        model.PortSpec(container_port=p.container_port, host_port=p.host_port, protocol=p.protocol.lower())
        for p in container.ports
    )
    if pod.host_network:
        for index, port in enumerate(container.ports):
            if port.host_port is not None and port.host_port != port.container_port:
                issues.error((*path, "ports", index, "hostPort"), "with hostNetwork, hostPort must equal containerPort")
    named_ports = {p.name: p.container_port for p in container.ports if p.name}
    resources = _resources(container.resources, issues, (*path, "resources"))
    user, read_only, security = _security(container, pod, issues, path)
    return model.ContainerSpec(
        name=container.name,
        image=container.image,
        pull_policy=container.image_pull_policy or default_pull_policy(container.image),
        command=_expanded(container.command, values, secrets, "command" in node_expanded, issues, (*path, "command")),
        args=_expanded(container.args, values, secrets, "args" in node_expanded, issues, (*path, "args")),
        node_expanded=node_expanded,
        env=env,
        env_from=configmaps.env_from(container, issues, path),
        ports=ports,
        working_dir=container.working_dir,
        user=user,
        read_only_root=read_only,
        security=security,
        mounts=_mounts(container, volumes, issues, path),
        liveness=_probe(container.liveness_probe, named_ports, issues, (*path, "livenessProbe")),
        readiness=_probe(container.readiness_probe, named_ports, issues, (*path, "readinessProbe")),
        startup=_probe(container.startup_probe, named_ports, issues, (*path, "startupProbe")),
        hooks=_hooks(container.lifecycle, named_ports, issues, (*path, "lifecycle")),
        restart_policy="Always" if container.restart_policy else None,
        **resources,
    )


def default_pull_policy(image: str) -> model.PullPolicy:
    """Kubernetes' default: Always for ``:latest`` or an untagged image, else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else None
    return "Always" if tag in (None, "latest") else "IfNotPresent"


def _env(
    container: kube.Container, pod: kube.PodSpec, ctx: PodContext, issues: Issues, path: Path
) -> tuple[tuple[model.EnvVar, ...], dict[str, str], frozenset[str], frozenset[str]]:
    out: list[model.EnvVar] = []
    values: dict[str, str] = {}
    secrets: set[str] = set()
    # Known only on the node (pod IP, node name...): references to them are expanded there.
    nodes: set[str] = set()
    for index, var in enumerate(container.env):
        epath = (*path, "env", index)
        if var.name in values or var.name in secrets or var.name in nodes:
            issues.warn((*epath, "name"), f"'{var.name}' is set again; the last value wins")
        source = var.value_from
        if source is not None and (source.secret_key_ref or source.config_map_key_ref):
            out.append(_deferred(var.name, source, issues, (*epath, "valueFrom")))
            secrets.add(var.name)  # known on the node (a secret) or once the revision's ConfigMaps are read
            values.pop(var.name, None)
            nodes.discard(var.name)
            continue
        if source is not None and (source.field_ref is not None or source.resource_field_ref is not None):
            resolved = fieldrefs.resolve(source, container, pod, ctx, issues, (*epath, "valueFrom"))
            if isinstance(resolved, model.FieldRef):
                # Known only on the node, which expands the references to it (expansion.template).
                out.append(model.EnvVar(name=var.name, field=resolved))
                nodes.add(var.name)
                secrets.discard(var.name)
                values.pop(var.name, None)
                continue
            value = resolved
        elif source is not None:
            issues.error(
                (*epath, "valueFrom"), "valueFrom needs secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef"
            )
            continue
        elif refers_to(var.value or "", nodes):
            text = _expand_one(var.value or "", values, frozenset(secrets), issues, (*epath, "value"), node=True)
            out.append(model.EnvVar(name=var.name, value=text, template=True))
            nodes.add(var.name)
            secrets.discard(var.name)
            values.pop(var.name, None)
            continue
        else:
            value = _expand_one(var.value or "", values, frozenset(secrets), issues, (*epath, "value"))
        out.append(model.EnvVar(name=var.name, value=value))
        values[var.name] = value
        secrets.discard(var.name)
        nodes.discard(var.name)
    return tuple(out), values, frozenset(secrets), frozenset(nodes)


def _deferred(name: str, source: kube.EnvVarSource, issues: Issues, path: Path) -> model.EnvVar:
    if source.secret_key_ref is not None:
        ref = source.secret_key_ref
        return model.EnvVar(name=name, secret=model.SecretRef(name=ref.name, key=ref.key, optional=ref.optional))
    assert source.config_map_key_ref is not None  # the caller checked one is set
    cref = source.config_map_key_ref
    return model.EnvVar(name=name, config=configmaps.config_ref(cref.name, cref.key, cref.optional, issues, path))


def _expanded(
    items: list[str] | None,
    values: dict[str, str],
    secrets: frozenset[str],
    node: bool,
    issues: Issues,
    path: Path,
) -> tuple[str, ...] | None:
    if items is None:
        return None
    return tuple(_expand_one(item, values, secrets, issues, (*path, i), node) for i, item in enumerate(items))


def _expand_one(
    text: str, values: dict[str, str], secrets: frozenset[str], issues: Issues, path: Path, node: bool = False
) -> str:
    """``text`` expanded; with ``node``, a template the node finishes (expansion.template)."""
    try:
        return template(text, values, secrets) if node else expand(text, values, secrets)
    except SecretReference as ref:
        issues.error(
            path,
            f"$({ref}) is a secret or ConfigMap value, not known while this file is parsed",
            f"read ${ref} from the environment in the command instead, e.g. sh -c '... \"${ref}\"'",
        )
        return text


def _resources(resources: kube.ResourceRequirements | None, issues: Issues, path: Path) -> dict[str, int | None]:
    limits = resources.limits if resources and resources.limits else kube.ResourceList()
    requests = resources.requests if resources and resources.requests else kube.ResourceList()
    # As in Kubernetes, a request left out defaults to the limit.
    cpu_request = limits.cpu if requests.cpu is None else requests.cpu
    memory_request = limits.memory if requests.memory is None else requests.memory
    for name, request, limit in (("cpu", cpu_request, limits.cpu), ("memory", memory_request, limits.memory)):
        if request is not None and limit is not None and request > limit:
            issues.error((*path, "requests", name), f"request is above the limit ({name} limit {limit})")
    if requests.gpu is not None and requests.gpu != limits.gpu:
        issues.error(
            (*path, "requests", "nvidia.com/gpu"),
            "GPU requests must equal the limit",
            "set GPUs under resources.limits only",
        )
    return {
        "cpu_limit_millis": limits.cpu,
        "memory_limit_bytes": limits.memory,
        "cpu_request_millis": cpu_request or 0,
        "memory_request_bytes": memory_request or 0,
        "gpus": limits.gpu or 0,
    }


def _security(
    container: kube.Container, pod: kube.PodSpec, issues: Issues, path: Path
) -> tuple[str | None, bool, model.SecurityContext]:
    own = container.security_context or kube.SecurityContext()
    shared = pod.security_context or kube.PodSecurityContext()
    uid = own.run_as_user if own.run_as_user is not None else shared.run_as_user
    gid = own.run_as_group if own.run_as_group is not None else shared.run_as_group
    non_root = own.run_as_non_root if own.run_as_non_root is not None else shared.run_as_non_root
    spath = (*path, "securityContext")
    if gid is not None and uid is None:
        issues.error((*spath, "runAsGroup"), "runAsGroup needs runAsUser here (Docker's --user is uid[:gid])")
    if non_root and uid == 0:
        issues.error(
            (*spath, "runAsNonRoot"),
            "runAsNonRoot is true but runAsUser is 0",
            "set runAsUser to a non-zero uid",
        )
    elif non_root and uid is None:
        issues.warn((*spath, "runAsNonRoot"), "cannot be checked against the image; set runAsUser to enforce it")
    caps = own.capabilities or kube.Capabilities()
    escalation = own.allow_privilege_escalation is False
    # As Kubernetes validates: privileged and CAP_SYS_ADMIN always allow escalation.
    if escalation and (own.privileged or "SYS_ADMIN" in caps.add):
        issues.error(
            (*spath, "allowPrivilegeEscalation"),
            "cannot be false with privileged or capabilities.add SYS_ADMIN, which allow escalation",
            "remove one of them",
        )
    seccomp = own.seccomp_profile or shared.seccomp_profile or kube.SeccompProfile(type="RuntimeDefault")
    user = None if uid is None else (str(uid) if gid is None else f"{uid}:{gid}")
    security = model.SecurityContext(
        privileged=bool(own.privileged),
        cap_add=tuple(sorted(set(caps.add))),
        cap_drop=tuple(sorted(set(caps.drop))),
        no_new_privileges=escalation,
        run_as_non_root=bool(non_root),
        seccomp=seccomp.type,
        seccomp_profile=seccomp.localhost_profile,
    )
    return user, own.read_only_root_filesystem, security


def _sysctls(pod: kube.PodSpec, issues: Issues, path: Path) -> tuple[tuple[str, str], ...]:
    sysctls = pod.security_context.sysctls if pod.security_context else []
    found: dict[str, str] = {}
    for index, sysctl in enumerate(sysctls):
        # As Kubernetes validates: a host namespace's sysctls are the node's, not the pod's.
        on_host = (pod.host_network and sysctl.name.startswith("net.")) or (
            pod.host_ipc and sysctl.name.startswith(IPC_SYSCTLS)
        )
        if on_host:
            issues.error(
                (*path, index, "name"),
                f"{sysctl.name} belongs to the host namespace the pod shares (hostNetwork or hostIPC)",
                "set it on the node instead, or stop sharing the host's namespace",
            )
        if sysctl.name in found:
            issues.error((*path, index, "name"), f"sysctl {sysctl.name} is set twice")
        found[sysctl.name] = sysctl.value
    return tuple(sorted(found.items()))


def _mounts(
    container: kube.Container, volumes: dict[str, kube.Volume], issues: Issues, path: Path
) -> tuple[model.Mount, ...]:
    mounts = []
    targets: set[str] = set()
    for index, mount in enumerate(container.volume_mounts):
        mpath = (*path, "volumeMounts", index)
        volume = volumes.get(mount.name)
        if volume is None:
            known = ", ".join(sorted(volumes)) or "none"
            issues.error((*mpath, "name"), f"no volume named '{mount.name}' in spec.volumes (declared: {known})")
            continue
        if mount.mount_path in targets:
            issues.error((*mpath, "mountPath"), f"'{mount.mount_path}' is mounted twice")
        targets.add(mount.mount_path)
        read_only, export = mount.read_only, None
        if volume.host_path is not None:
            kind, source = "hostPath", volume.host_path.path
        elif volume.empty_dir is not None:
            kind, source = "emptyDir", volume.name
        elif (pvc := volume.persistent_volume_claim) is not None:
            kind, source, read_only = "claim", pvc.claim_name, read_only or pvc.read_only
            if mount.sub_path:
                issues.error(
                    (*mpath, "subPath"),
                    "subPath is not supported on a persistentVolumeClaim volume",
                    "mount the whole volume, or give each use its own claim",
                )
        elif (nfs := volume.nfs) is not None:
            kind, source, read_only = "nfs", volume.name, read_only or nfs.read_only
            export = model.NfsSource(server=nfs.server, path=nfs.path)
            if mount.sub_path:
                issues.error(
                    (*mpath, "subPath"),
                    "subPath is not supported on an nfs volume",
                    "export the subdirectory and mount that export",
                )
        else:
            kind, source, read_only = "files", volume.name, True  # as in Kubernetes, always read-only
        mounts.append(
            model.Mount(
                target=mount.mount_path,
                type=kind,
                source=source,
                read_only=read_only,
                sub_path=mount.sub_path,
                propagation=_propagation(mount, kind, container, issues, mpath),
                nfs=export,
            )
        )
    return tuple(mounts)


def _propagation(
    mount: kube.VolumeMount, kind: str, container: kube.Container, issues: Issues, path: Path
) -> Literal["rslave", "rshared"] | None:
    mode = mount.mount_propagation
    if mode in (None, "None"):
        return None
    ppath = (*path, "mountPropagation")
    if kind != "hostPath":
        issues.error(ppath, f"{mode} propagation needs a hostPath volume here", "remove mountPropagation")
        return None
    if mode == "HostToContainer":
        return "rslave"
    # As in Kubernetes: mounts made inside the container reach the host only from a privileged one.
    if not (container.security_context and container.security_context.privileged):
        issues.error(ppath, "Bidirectional propagation needs a privileged container", "use HostToContainer")
    return "rshared"


def _probe(probe: kube.Probe | None, named_ports: dict[str, int], issues: Issues, path: Path) -> model.Probe | None:
    if probe is None:
        return None
    if path[-1] != "readinessProbe" and probe.success_threshold != 1:
        issues.error((*path, "successThreshold"), "must be 1 for liveness and startup probes (as in Kubernetes)")
    timings = {
        "initial_delay_s": probe.initial_delay_seconds,
        "period_s": probe.period_seconds,
        "timeout_s": probe.timeout_seconds,
        "success_threshold": probe.success_threshold,
        "failure_threshold": probe.failure_threshold,
    }
    if probe.exec is not None:
        return model.Probe(handler="exec", command=tuple(probe.exec.command), **timings)
    if probe.http_get is not None:
        return model.Probe(handler="httpGet", **_http_get(probe.http_get, named_ports, issues, path), **timings)
    if probe.grpc is not None:
        return model.Probe(handler="grpc", port=probe.grpc.port, service=probe.grpc.service or "", **timings)
    assert probe.tcp_socket is not None  # the model requires exactly one handler
    tcp = probe.tcp_socket
    return model.Probe(
        handler="tcpSocket",
        host=tcp.host,
        port=_port(tcp.port, named_ports, issues, (*path, "tcpSocket", "port")),
        **timings,
    )


# The kubelet gives an httpGet hook no timeout of its own; the grace period bounds a preStop.
_HOOK_HTTP_TIMEOUT_S = 10


def _hooks(
    lifecycle: kube.Lifecycle | None, named_ports: dict[str, int], issues: Issues, path: Path
) -> model.Hooks | None:
    if lifecycle is None or (lifecycle.post_start is None and lifecycle.pre_stop is None):
        return None
    return model.Hooks(
        post_start=_hook(lifecycle.post_start, named_ports, issues, (*path, "postStart")),
        pre_stop=_hook(lifecycle.pre_stop, named_ports, issues, (*path, "preStop")),
    )


def _hook(
    hook: kube.LifecycleHandler | None, named_ports: dict[str, int], issues: Issues, path: Path
) -> model.Handler | None:
    if hook is None:
        return None
    if hook.exec is not None:
        return model.Handler(handler="exec", command=tuple(hook.exec.command))
    if hook.sleep is not None:
        return model.Handler(handler="sleep", timeout_s=hook.sleep.seconds)
    assert hook.http_get is not None  # the model requires exactly one handler
    return model.Handler(
        handler="httpGet", **_http_get(hook.http_get, named_ports, issues, path), timeout_s=_HOOK_HTTP_TIMEOUT_S
    )


def _http_get(get: kube.HTTPGetAction, named_ports: dict[str, int], issues: Issues, path: Path) -> dict[str, Any]:
    """The fields a probe and a hook share for an httpGet handler."""
    return {
        "path": get.path,
        "scheme": get.scheme,
        "host": get.host,
        "port": _port(get.port, named_ports, issues, (*path, "httpGet", "port")),
        "headers": tuple((h.name, h.value) for h in get.http_headers),
    }


def _port(port: int | str, named_ports: dict[str, int], issues: Issues, path: Path) -> int:
    if isinstance(port, int):
        return port
    if port in named_ports:
        return named_ports[port]
    known = ", ".join(sorted(named_ports)) or "none"
    issues.error(path, f"no container port is named '{port}' (named ports: {known})")
    return 0


def _check_host_ports(containers: list[tuple[Path, model.ContainerSpec]], issues: Issues) -> None:
    seen: set[tuple[int, str]] = set()
    for path, container in containers:
        for port in container.ports:
            if port.host_port is None:
                continue
            key = (port.host_port, port.protocol)
            if key in seen:
                issues.error((*path, "ports"), f"hostPort {port.host_port}/{port.protocol} is used twice")
            seen.add(key)
