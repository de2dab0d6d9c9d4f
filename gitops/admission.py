"""Node admission: whether a node's policy lets a workload run there (docs/security.md, "Admission"). Pure.

Levels follow the Kubernetes Pod Security Standards (privileged, baseline, restricted),
with two deliberate differences documented in docs/security.md: ``baseline`` admits host
ports (there are no Services here; a host port is how traffic gets in) and admits a
hostPath under one of the node's ``host_paths`` prefixes. Registry patterns apply at
every level. Every node evaluates a workload against every peer's published policy with
these same functions, so placement agrees everywhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_serializer, field_validator

from gitops.model import ContainerSpec, Mount, PodSpec, Workload

Level = Literal["privileged", "baseline", "restricted"]

# Capabilities PSS baseline lets a container add (Docker's default set, less NET_RAW).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Sysctls PSS baseline calls safe: namespaced and unable to affect other pods or the node.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_syncookies",
    }
)

# Bounds that keep a peer's published policy small (status records are untrusted input).
MAX_NAMESPACES = 1024
MAX_PATTERNS = 256
MAX_ITEM = 1024
# Verdicts kept for placement; cleared whole when full (a pass needs one per workload and policy).
_MAX_VERDICTS = 100_000

Item = Annotated[str, Field(min_length=1, max_length=MAX_ITEM)]


def normalise_path(path: str) -> str:
    """``path`` with ``.``, ``..`` and repeated slashes resolved lexically: ``/srv/../etc`` is ``/etc``."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


def host_path_source(mount: Mount) -> str | None:
    """The node path a hostPath mount binds, ``subPath`` included and normalised; None for other volumes."""
    if mount.type != "hostPath":
        return None
    return normalise_path(f"{mount.source}/{mount.sub_path}" if mount.sub_path else mount.source)


def under(path: str, prefix: str) -> bool:
    """Whether normalised ``path`` is ``prefix`` or below it by components (``/srv/data2`` is not in ``/srv/data``)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def normalise_image(image: str) -> str:
    """The full reference Docker resolves ``image`` to: ``busybox`` is ``docker.io/library/busybox:latest``."""
    name, at, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        first, rest = "docker.io", name
    elif first == "index.docker.io":
        first = "docker.io"
    if first == "docker.io" and "/" not in rest:
        rest = "library/" + rest
    full = f"{first}/{rest}"
    if at:
        return f"{full}@{digest}"
    return full if ":" in full.rsplit("/", 1)[-1] else full + ":latest"


@functools.lru_cache(maxsize=1024)
def _pattern(glob: str) -> re.Pattern[str]:
    # '**' crosses '/', '*' and '?' stay within one component: 'registry.example.com/*' is not a prefix match.
    out = []
    for token in re.split(r"(\*\*|\*|\?)", glob):
        out.append({"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token)))
    return re.compile("".join(out))


def image_allowed(image: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``image`` (normalised) matches one of ``patterns``; no patterns allow any image."""
    full = normalise_image(image)
    return not patterns or any(_pattern(p).fullmatch(full) for p in patterns)


class Policy(BaseModel):
    """What a node admits: a level per namespace, hostPath prefixes and image patterns (node config ``policy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    default: Level = "baseline"
    # Sorted (namespace, level) pairs, written as a mapping: hashable, so verdicts can be cached.
    namespaces: Annotated[tuple[tuple[Item, Level], ...], Field(max_length=MAX_NAMESPACES)] = ()
    host_paths: Annotated[tuple[Item, ...], Field(max_length=MAX_PATTERNS)] = Field(
        default=(), validation_alias=AliasChoices("host_paths", "hostPaths"), serialization_alias="hostPaths"
    )
    registries: Annotated[tuple[Item, ...], Field(max_length=MAX_PATTERNS)] = ()

    @field_validator("namespaces", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            if len(value) > MAX_NAMESPACES:
                raise ValueError(f"at most {MAX_NAMESPACES} namespaces")
            return tuple(sorted(value.items()))
        return value

    @field_validator("host_paths")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"host_paths entry '{path}' must be an absolute path")
        return tuple(normalise_path(p) for p in value)

    @field_validator("registries")
    @classmethod
    def _no_spaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if any(c.isspace() for c in pattern):
                raise ValueError(f"registries pattern '{pattern}' must not contain spaces")
        return value

    @field_serializer("namespaces")
    def _as_mapping(self, value: tuple[tuple[str, Level], ...]) -> dict[str, str]:
        return dict(value)

    @cached_property
    def _levels(self) -> dict[str, Level]:
        return dict(self.namespaces)

    def level_for(self, namespace: str) -> Level:
        """The level this policy applies to ``namespace``."""
        return self._levels.get(namespace, self.default)


def violations(workload: Workload, policy: Policy) -> tuple[str, ...]:
    """The rules of ``policy`` that ``workload`` breaks, as readable text; empty: admitted."""
    pod = workload.pod
    level = policy.level_for(workload.namespace)
    rules = [
        f"image {c.image} ({normalise_image(c.image)}) matches no allowed registry pattern "
        f"({', '.join(policy.registries)})"
        for c in pod.containers
        if not image_allowed(c.image, policy.registries)
    ]
    if level != "privileged":
        rules += _baseline(pod, level, policy.host_paths)
    if level == "restricted":
        rules += [rule for c in pod.containers for rule in _restricted(c)]
    return tuple(rules)


_VERDICTS: dict[tuple[str, str, Policy], tuple[str, ...]] = {}


def verdict(workload: Workload, policy: Policy) -> tuple[str, ...]:
    """``violations`` cached per (namespace, spec hash, policy): placement asks once per workload and node."""
    key = (workload.namespace, workload.spec_hash, policy)
    found = _VERDICTS.get(key)
    if found is None:
        if len(_VERDICTS) >= _MAX_VERDICTS:
            _VERDICTS.clear()
        found = _VERDICTS[key] = violations(workload, policy)
    return found


def _baseline(pod: PodSpec, level: Level, host_paths: tuple[str, ...]) -> list[str]:
    rules = [
        f"{level} forbids {field}"
        for field, on in (("hostNetwork", pod.host_network), ("hostPID", pod.host_pid), ("hostIPC", pod.host_ipc))
        if on
    ]
    rules += [
        f"{level} forbids sysctl {name} (not in the safe set)" for name, _ in pod.sysctls if name not in SAFE_SYSCTLS
    ]
    for c in pod.containers:
        where = f"(container {c.name})"
        if c.security.privileged:
            rules.append(f"{level} forbids privileged {where}")
        rules += [
            f"{level} forbids adding capability {cap} {where}"
            for cap in c.security.cap_add
            if cap not in BASELINE_CAPABILITIES
        ]
        if c.security.seccomp == "Unconfined":
            rules.append(f"{level} forbids seccompProfile Unconfined {where}")
        for m in c.mounts:
            source = host_path_source(m)
            if source is None or (level == "baseline" and any(under(source, prefix) for prefix in host_paths)):
                continue
            written = f"{m.source}" + (f" subPath {m.sub_path}" if m.sub_path else "")
            also = "" if written == source else f", written {written}"
            why = f": not under host_paths ({', '.join(host_paths) or 'none'})" if level == "baseline" else ""
            rules.append(f"{level} forbids hostPath {source} (container {c.name}{also}){why}")
    return rules


def _restricted(c: ContainerSpec) -> list[str]:
    where = f"(container {c.name})"
    rules = [f"restricted forbids hostPort {p.host_port} {where}" for p in c.ports if p.host_port]
    # As the Pod Security Standards: nfs is not among the volume types restricted allows.
    rules += [f"restricted forbids nfs volume {m.source} {where}" for m in c.mounts if m.type == "nfs"]
    s = c.security
    if not s.no_new_privileges:
        rules.append(f"restricted requires allowPrivilegeEscalation: false {where}")
    if not s.run_as_non_root:
        rules.append(f"restricted requires runAsNonRoot: true {where}")
    if c.user is not None and c.user.split(":")[0] == "0":
        rules.append(f"restricted forbids runAsUser 0 {where}")
    if "ALL" not in s.cap_drop:
        rules.append(f"restricted requires capabilities.drop [ALL] {where}")
    # Capabilities beyond the baseline set are already named by the baseline rules.
    rules += [
        f"restricted forbids adding capability {cap} {where}"
        for cap in s.cap_add
        if cap != "NET_BIND_SERVICE" and cap in BASELINE_CAPABILITIES
    ]
    return rules
