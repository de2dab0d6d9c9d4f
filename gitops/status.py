"""The status record each node publishes on ``gitops/status/<node>`` (docs/status.md).

Peers' records are untrusted input (docs/status.md, "Untrusted records"): ``parse_record`` checks one record
on its own, by meaning (times with a timezone, bounded numbers, strings and row counts, the
size and shape of the YAML, the node it names), so every reader can rely on what passed.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gitops import yamlemit
from gitops.admission import Policy
from gitops.identity import ReplicaId, WorkloadKey
from gitops.manifests.yamlsafe import Limits, YamlError, format_path, load_documents
from gitops.scheduling import MAX_TAINTS, Taint, TaintEffect
from gitops.states import State

# A record is refused unread past this size; thousands of rows take a few hundred KiB.
STATUS_MAX_BYTES = 4 * 1024 * 1024
MAX_ROWS = 100_000
MAX_GPUS = 1024
MAX_LABELS = 1024
# Identifiers (names, hashes, ids, label keys and values) longer than this are refused.
MAX_NAME = 1024
# Free text (messages, file paths in errors) is clipped to this, never refused.
MAX_TEXT = 4096
# Millicores and MiB: 2**40 is far beyond any machine and far below numpy's int64.
MAX_CAPACITY = 2**40
MAX_REPLICA = 100_000
MAX_RESTARTS = 10**9
MAX_EXIT_CODE = 2**32
# Times outside this window are refused: arithmetic on them (ages, cron slots) stays in range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)

# A record nests four levels deep and needs no aliases; a few are allowed for hand-written ones.
_YAML_LIMITS = Limits(max_bytes=STATUS_MAX_BYTES, max_documents=1, max_depth=16, max_alias_nodes=1000)


class BadRecord(Exception):
    """A status record failed validation; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a timezone as an aware UTC datetime; ValueError saying why not."""
    if len(text) > 64:
        raise ValueError("is too long to be a time")
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"is not an ISO 8601 time: {text!r}") from None
    if t.utcoffset() is None:
        raise ValueError("has no timezone")
    try:
        t = t.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"is out of range: {text!r}") from None
    if not EARLIEST <= t < LATEST:
        raise ValueError(f"is out of range ({EARLIEST.year}..{LATEST.year}): {text!r}")
    return t


def _time(text: str) -> str:
    # Empty means "not known" (the models' defaults); anything else must be a real time.
    if text:
        parse_time(text)
    return text


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _address(text: str) -> str:
    """``text`` if it is a unicast IPv4 address, else empty: peers DNAT Service traffic to it.

    Empty rather than an error, so a bad address costs the node its endpoints, not its place in the cluster.
    """
    try:
        ip = ipaddress.IPv4Address(text[:64])
    except ValueError:
        return ""
    return "" if ip.is_unspecified or ip.is_multicast or ip.is_reserved or str(ip) != text else text


Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
Text = Annotated[str, AfterValidator(_clip)]
Time = Annotated[str, AfterValidator(_time)]
Amount = Annotated[int, Field(ge=0, le=MAX_CAPACITY)]


class _Status(BaseModel):
    # Reading tolerates fields from newer daemons: a mixed-version cluster must still agree.
    # Strict: a peer's "3" or true is no replica index, and "yes" is no boolean.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class GpuStatus(_Status):
    """One GPU of a node."""

    uuid: Name
    model: Name = ""
    memory: Amount = 0


class Capacity(_Status):
    """Allocatable capacity: millicores, MiB, GPUs."""

    cpu: Amount = 0
    memory: Amount = 0
    gpus: list[GpuStatus] = Field(default_factory=list, max_length=MAX_GPUS)


class HeldStatus(_Status):
    """A namespace (or the Cluster, ``gitops/Cluster``) that runs an older revision than ``sha``."""

    namespace: Name
    sha: Name
    # The commit that changed it without authority, its signer, and why it was refused.
    commit: Name = ""
    signer: Name = ""
    reason: Text = ""


class TaintStatus(_Status):
    """One taint of a node (Kubernetes' bounds); an effect this version does not know is ignored by readers."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    value: Annotated[str, StringConstraints(max_length=63)] = ""
    effect: Name
    time_added: Time | None = Field(default=None, alias="timeAdded")


class RevisionStatus(_Status):
    """The revision the node last applied."""

    sha: Name = ""
    verified: bool = False
    applied_at: Time = Field(default="", alias="appliedAt")
    # Team namespaces (docs/security.md) held at an older revision; every other one runs ``sha``.
    held: list[HeldStatus] | None = Field(default=None, max_length=MAX_ROWS)


class ErrorStatus(_Status):
    """One manifest or runtime error, without secret values."""

    file: Text = ""
    line: Annotated[int, Field(ge=0, le=2**31)] | None = None
    field: Text | None = None
    message: Text = ""


class PortStatus(_Status):
    """A container port of a replica published on its node's address: where Service traffic goes."""

    container_port: Annotated[int, Field(ge=1, le=65535)] = Field(alias="containerPort")
    protocol: Name = "tcp"
    host_port: Annotated[int, Field(ge=1, le=65535)] = Field(alias="hostPort")


class ReplicaStatus(_Status):
    """One replica this node runs (or tried to)."""

    namespace: Name
    kind: Name
    name: Name
    replica: Annotated[int, Field(ge=0, le=MAX_REPLICA)]
    spec_hash: Name = Field(alias="specHash")
    container: Name | None = None
    # Plain strings, not State: a newer daemon may report states this one does not know.
    state: Name
    reason: Name | None = None
    message: Text | None = None
    exit_code: Annotated[int, Field(ge=-MAX_EXIT_CODE, le=MAX_EXIT_CODE)] | None = Field(default=None, alias="exitCode")
    restarts: Annotated[int, Field(ge=0, le=MAX_RESTARTS)] = 0
    since: Time | None = None
    # Set when this replica halted a rollout: the spec that never became ready.
    failed_spec_hash: Name | None = Field(default=None, alias="failedSpecHash")
    # CronJob runs: the CronJob's name and the scheduled time this run belongs to.
    cronjob: Name | None = None
    slot: Time | None = None
    # Published ports of a running replica; its Service endpoints on other nodes.
    ports: list[PortStatus] | None = Field(default=None, max_length=1024)

    @property
    def key(self) -> WorkloadKey:
        """namespace/kind/name of the workload."""
        return WorkloadKey.of(self.namespace, self.kind, self.name)

    @property
    def rid(self) -> ReplicaId:
        """(workload key, replica index)."""
        return ReplicaId(self.key, self.replica)

    def slot_time(self) -> datetime | None:
        """The CronJob slot as an aware UTC datetime, or None if there is none."""
        return _time_or_none(self.slot or "")


class PolicyStatus(Policy):
    """What a node admits, as published for placement; ``Policy`` bounds its size."""

    # Tolerant of fields from newer daemons, like every status model.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# Bytes of memory: far beyond any machine, within int64.
MAX_BYTES = 2**62
Replicas = Annotated[int, Field(ge=0, le=MAX_REPLICA)]


class UsageStatus(_Status):
    """What this node's ready replicas of one autoscaled workload use together, averaged over the sampling window."""

    namespace: Name
    kind: Name
    name: Name
    pods: Replicas
    cpu: Amount  # millicores
    memory: Annotated[int, Field(ge=0, le=MAX_BYTES)]  # bytes
    # Pods metrics (docs/autoscaling.md), present only where measured: ``gpu_pods`` replicas with GPU samples
    # and their summed utilization, and the connections per second this node sent to the workload's
    # endpoints; both in thousandths.
    gpu_pods: Replicas | None = Field(default=None, alias="gpuPods")
    gpu: Amount | None = None
    connections: Amount | None = None


class MetricStatus(_Status):
    """One metric an autoscaler decision read: percent of requests when ``utilization``, else per-replica units."""

    resource: Name
    utilization: bool = False
    current: Annotated[int, Field(ge=0, le=MAX_BYTES)]
    target: Annotated[int, Field(ge=0, le=MAX_BYTES)]


class ScaleEventStatus(_Status):
    """The last time an autoscaler's decider changed the count."""

    time: Time
    from_: Replicas = Field(alias="from")
    to: Replicas
    reason: Text = ""


class AutoscalerStatus(_Status):
    """An autoscaler's count as its decider decided it; other nodes publish the decision they apply."""

    namespace: Name
    name: Name
    # kind/name of the workload it scales
    target: Name
    replicas: Replicas
    decider: Name
    # When the decider set ``replicas``: the newest decision wins on every node.
    time: Time
    current: Replicas = 0
    reason: Text = ""
    metrics: list[MetricStatus] = Field(default_factory=list, max_length=64)
    last_scale: ScaleEventStatus | None = Field(default=None, alias="lastScale")

    def decided_at(self) -> datetime:
        """``time`` as an aware UTC datetime (the epoch if unreadable)."""
        return _time_or_none(self.time) or EARLIEST


class AutoscalingStatus(_Status):
    """A node's part in autoscaling: its usage samples and the decisions it publishes or applies."""

    usage: list[UsageStatus] = Field(default_factory=list, max_length=MAX_ROWS)
    decisions: list[AutoscalerStatus] = Field(default_factory=list, max_length=MAX_ROWS)


class NodeStatus(_Status):
    """The whole ``status.yaml`` of one node."""

    node: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
    # The node's IPv4 address for Service traffic; empty from daemons older than Services.
    address: Annotated[str, AfterValidator(_address)] = ""
    daemon_version: Name = Field(default="", alias="daemonVersion")
    heartbeat: Time = ""
    labels: dict[Name, Name] = Field(default_factory=dict, max_length=MAX_LABELS)
    taints: list[TaintStatus] = Field(default_factory=list, max_length=MAX_TAINTS)
    capacity: Capacity = Field(default_factory=Capacity)
    # None: a daemon too old to publish one, which admits everything.
    policy: PolicyStatus | None = None
    revision: RevisionStatus = Field(default_factory=RevisionStatus)
    placement_digest: Name = Field(default="", alias="placementDigest")
    live_nodes: list[Name] = Field(default_factory=list, alias="liveNodes", max_length=MAX_ROWS)
    errors: list[ErrorStatus] = Field(default_factory=list, max_length=MAX_ROWS)
    workloads: list[ReplicaStatus] = Field(default_factory=list, max_length=MAX_ROWS)
    # The PersistentVolumeClaims (namespace/name) whose volumes are on this node: placement pins their users here.
    volumes: list[Name] | None = Field(default=None, max_length=MAX_ROWS)
    autoscaling: AutoscalingStatus | None = None

    def heartbeat_time(self) -> datetime | None:
        """The heartbeat as an aware UTC datetime, or None if there is none."""
        return _time_or_none(self.heartbeat)


_EFFECTS: dict[str, TaintEffect] = {e: e for e in get_args(TaintEffect)}


def taints_of(status: NodeStatus) -> tuple[Taint, ...]:
    """A node's published taints as placement reads them; effects this version does not know are left out."""
    return tuple(
        Taint(key=t.key, value=t.value, effect=_EFFECTS[t.effect], time_added=_time_or_none(t.time_added or ""))
        for t in status.taints
        if t.effect in _EFFECTS
    )


def _time_or_none(text: str) -> datetime | None:
    # Validation already checked it; model_copy(update=...) does not validate, hence the guard.
    try:
        return parse_time(text) if text else None
    except ValueError:
        return None


def utc_now_iso(now: datetime | None = None) -> str:
    """UTC timestamp, second precision, ``Z`` suffix."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dump(status: NodeStatus) -> bytes:
    """Serialise a status record as YAML with the documented camelCase keys."""
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yamlemit.dump(data).encode()


def parse_record(raw: bytes, node: str) -> NodeStatus:
    """Validate the ``status.yaml`` read from ``node``'s branch on its own; BadRecord saying why not."""
    if len(raw) > STATUS_MAX_BYTES:
        raise BadRecord(f"status.yaml is {len(raw)} bytes, over the {STATUS_MAX_BYTES}-byte limit")
    try:
        docs = load_documents(raw, _YAML_LIMITS)
    except YamlError as e:
        raise BadRecord(f"unreadable YAML: {e.message}" + (f" (line {e.line})" if e.line else "")) from None
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise BadRecord("status.yaml is not one YAML mapping")
    if docs[0].issues:
        issue = docs[0].issues[0]
        raise BadRecord(f"{issue.message} (line {issue.line})")
    try:
        status = NodeStatus.model_validate(docs[0].data)
    except ValidationError as e:
        raise BadRecord(_reason(e)) from None
    if status.node != node:
        raise BadRecord(f"node field is {_short(status.node)}, not {node!r} as its branch says")
    return status


def _reason(exc: ValidationError) -> str:
    """The first problem pydantic found, as ``<field path> <what is wrong>``."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    where = format_path(tuple(err["loc"])) or "the record"
    if err["type"] == "value_error":
        what = str(err.get("ctx", {}).get("error", err["msg"]))
    elif err["type"] == "missing":
        what = "is missing"
    else:
        what = f"is invalid: {err['msg']} (got {_short(err['input'])})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where} {what}{more}"


def _short(value: object) -> str:
    """A bounded one-line rendering of a rejected value."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        # repr() of a huge int is slow and can raise past Python's digit limit.
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, dict | list):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    text = repr(value[:80] if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def content_key(status: NodeStatus) -> dict[str, Any]:
    """The record minus its heartbeat: a change here is worth a commit before the next heartbeat.

    Usage samples and the metrics behind a decision change every pass: they ride along with heartbeats.
    """
    return status.model_dump(
        exclude={"heartbeat": True, "autoscaling": {"usage": True, "decisions": {"__all__": {"metrics"}}}}
    )


# States a commit message counts as doing well.
GOOD = (State.READY, State.RUNNING, State.SUCCEEDED)


def commit_message(status: NodeStatus) -> str:
    """A one-line summary like ``node-1: web 2/2 ready at abc1234``."""
    per: dict[str, Counter[str]] = {}
    for r in status.workloads:
        per.setdefault(r.name, Counter())[r.state] += 1
    parts = []
    for name in sorted(per):
        counts = per[name]
        total = sum(counts.values())
        good = sum(counts[s] for s in GOOD)
        word = State.SUCCEEDED if counts[State.SUCCEEDED] and counts[State.SUCCEEDED] == good else State.READY
        extra = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in GOOD)
        parts.append(f"{name} {good}/{total} {word}" + (f" ({extra})" if extra else ""))
    summary = "; ".join(parts) if parts else "no workloads"
    if status.errors:
        summary += f"; {len(status.errors)} error(s)"
    return f"{status.node}: {summary} at {status.revision.sha[:7]}"
