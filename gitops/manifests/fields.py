"""Building blocks of the Kubernetes input models: the strict base, field classes, typed values.

Every Kubernetes field falls in one of three classes (docs/manifests.md). Supported
fields are ordinary typed fields. ``Ignore`` marks a field that is accepted and dropped
with a warning; ``Refuse`` marks one whose meaning would change if dropped, so setting
it is a validation error that says what to do instead.
"""

from __future__ import annotations

import functools
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, PlainValidator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, core_schema

from gitops.manifests import names, quantity


class KubeModel(BaseModel):
    """A Kubernetes object or sub-object: camelCase keys, no unknown keys, no type coercion."""

    model_config = ConfigDict(strict=True, extra="forbid", alias_generator=to_camel, frozen=True)


def is_set(value: object) -> bool:
    """Whether a field's value means anything: Kubernetes treats false, 0-length and null as unset."""
    return value is not None and value is not False and value != [] and value != {} and value != ""


@dataclass(frozen=True)
class Ignore:
    """Marks a field dropped with a warning, because it only means something to a Kubernetes cluster."""

    why: str = "only meaningful to a Kubernetes API server"


@dataclass(frozen=True)
class Refuse:
    """Marks a field that is an error to set; ``what_to_do`` is the message users see."""

    what_to_do: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """Validate the field by rejecting any value that means something."""
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: object) -> None:
        """Raise the refusal if ``value`` is set."""
        if is_set(value):
            raise refusal(self.what_to_do)


def refusal(what_to_do: str) -> PydanticCustomError:
    """The validation error for a refused field or value."""
    return PydanticCustomError("refused", "{what}", {"what": what_to_do})


def refuse_when(predicate: Any, what_to_do: str) -> AfterValidator:
    """A validator that refuses values for which ``predicate`` is true."""

    def check(value: Any) -> Any:
        if value is not None and predicate(value):
            raise refusal(what_to_do)
        return value

    return AfterValidator(check)


def checked(check: Any) -> AfterValidator:
    """A validator running ``check``, whose ValueError message becomes the field's error."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid", "{why}", {"why": str(exc)}) from None

    return AfterValidator(run)


def _parsed(parse: Any) -> PlainValidator:
    def run(value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid", "{why}", {"why": str(exc)}) from None

    return PlainValidator(run)


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"'{value}' must be an absolute path")
    return value


def _relative_path(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"'{value}' must be a relative path without '..'")
    return value


# Linux capabilities Docker can add or drop, named as Kubernetes writes them (no CAP_ prefix).
CAPABILITIES = frozenset(
    [
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "SYSLOG",
        "WAKE_ALARM",
    ]
)


def _capability(name: str) -> str:
    # As the runtimes under the kubelet do: any case, with or without the CAP_ prefix.
    upper = name.strip().upper()
    canonical = upper.removeprefix("CAP_")
    if canonical != "ALL" and canonical not in CAPABILITIES:
        raise ValueError(f"'{name}' is not a Linux capability (e.g. NET_ADMIN, SYS_TIME, or ALL)")
    return canonical


_SYSCTL_NAME = re.compile(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
# Sysctls with their own value per container (IPC and network namespaces); the rest are the node's.
IPC_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")
_NAMESPACED_SYSCTLS = (*IPC_SYSCTLS, "net.")


def _sysctl_name(name: str) -> str:
    if not _SYSCTL_NAME.match(name):
        raise ValueError(f"'{name}' is not a sysctl name (e.g. net.ipv4.tcp_keepalive_time)")
    # Kubernetes accepts '/' as the separator (net/ipv4/conf/eth0.1/forwarding): swap to the dotted form.
    first = re.search(r"[./]", name)
    dotted = name.translate(str.maketrans("./", "/.")) if first and first.group() == "/" else name
    if not dotted.startswith(_NAMESPACED_SYSCTLS):
        raise ValueError(
            f"sysctl {name} is not namespaced, so a container cannot have its own value; set it on the nodes "
            "(sysctl.d) instead. Namespaced: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*"
        )
    return dotted


def _image(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"image '{value}' must be a non-empty reference without spaces, e.g. 'nginx:1.27'")
    return value


def _int_or_name(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            return value
        raise ValueError(f"port {value} must be between 1 and 65535")
    if isinstance(value, str):
        return names.port_name(value)
    raise ValueError("port must be a number or the name of a container port")


def _int_or_percent(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) <= 100:
        return value
    raise ValueError(f"{value!r} must be a whole number or a percentage such as '25%'")


Label = Annotated[str, checked(names.dns_label)]
PortName = Annotated[str, checked(names.port_name)]
EnvName = Annotated[str, checked(names.env_name)]
NamePrefix = Annotated[str, checked(names.name_prefix)]
AbsolutePath = Annotated[str, checked(_absolute_path)]
RelativePath = Annotated[str, checked(_relative_path)]
Image = Annotated[str, checked(_image)]
Capability = Annotated[str, checked(_capability)]
SysctlName = Annotated[str, checked(_sysctl_name)]
Port = Annotated[int, Field(ge=1, le=65535)]
PortRef = Annotated[int | str, _parsed(_int_or_name)]
IntOrPercent = Annotated[int | str, _parsed(_int_or_percent)]
Seconds = Annotated[int, Field(ge=0, le=365 * 24 * 3600)]
PositiveSeconds = Annotated[int, Field(ge=1, le=365 * 24 * 3600)]
Count = Annotated[int, Field(ge=0, le=1000)]
Uid = Annotated[int, Field(ge=0, le=2**31 - 1)]
CpuMillis = Annotated[int, _parsed(quantity.cpu_millis)]
MemoryBytes = Annotated[int, _parsed(quantity.memory_bytes)]
Gpus = Annotated[int, _parsed(quantity.gpu_count)]
StorageBytes = Annotated[int, _parsed(quantity.storage_bytes)]


@functools.cache
def fields_by_alias(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """alias -> (attribute name, annotation with its metadata) for every field of ``model``."""
    out: dict[str, tuple[str, Any]] = {}
    for name, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        out[info.alias or name] = (name, annotation)
    return out


def field_marker(annotation: Any) -> Ignore | Refuse | None:
    """The Ignore or Refuse marker of a field annotation, if it has one."""
    if get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, Ignore | Refuse):
                return meta
    return None


def step(annotation: Any, key: str | int) -> Any:
    """Annotation of ``key`` inside a value of type ``annotation``, or None if unknown."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return None
            annotation = options[0]
        else:
            break
    if origin in (list, tuple):
        return get_args(annotation)[0] if isinstance(key, int) else None
    if origin is dict:
        return get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(key, str):
        found = fields_by_alias(annotation).get(key)
        return found[1] if found else None
    return None


def model_at(root: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class found at ``path`` below ``root``, if the path leads to one."""
    annotation: Any = root
    for key in path:
        annotation = step(annotation, key)
        if annotation is None:
            return None
    while get_origin(annotation) in (Annotated, Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        annotation = options[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def ignored_fields(model: BaseModel, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, why) of every Ignore-marked field that is set somewhere inside ``model``."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for alias, (name, annotation) in fields_by_alias(type(model)).items():
        if name not in model.model_fields_set:
            continue
        value = getattr(model, name)
        marker = field_marker(annotation)
        if isinstance(marker, Ignore):
            if is_set(value):
                found.append(((*path, alias), marker.why))
        elif isinstance(value, BaseModel):
            found.extend(ignored_fields(value, (*path, alias)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(ignored_fields(item, (*path, alias, index)))
    return found
