"""The status record each node publishes on ``gitops/status/<node>`` (DESIGN.md section 6)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gitops.identity import ReplicaId, WorkloadKey
from gitops.states import State


class _Status(BaseModel):
    # Reading tolerates fields from newer daemons: a mixed-version cluster must still agree.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class GpuStatus(_Status):
    """One GPU of a node."""

    uuid: str
    model: str = ""
    memory: int = 0


class Capacity(_Status):
    """Allocatable capacity: millicores, MiB, GPUs."""

    cpu: int = 0
    memory: int = 0
    gpus: list[GpuStatus] = Field(default_factory=list)


class RevisionStatus(_Status):
    """The revision the node last applied."""

    sha: str = ""
    verified: bool = False
    applied_at: str = Field(default="", alias="appliedAt")


class ErrorStatus(_Status):
    """One manifest or runtime error, without secret values."""

    file: str = ""
    line: int | None = None
    field: str | None = None
    message: str = ""


class ReplicaStatus(_Status):
    """One replica this node runs (or tried to)."""

    namespace: str
    kind: str
    name: str
    replica: int
    spec_hash: str = Field(alias="specHash")
    container: str | None = None
    state: str
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = Field(default=None, alias="exitCode")
    restarts: int = 0
    since: str | None = None
    # Set when this replica halted a rollout: the spec that never became ready.
    failed_spec_hash: str | None = Field(default=None, alias="failedSpecHash")
    # CronJob runs: the CronJob's name and the scheduled time this run belongs to.
    cronjob: str | None = None
    slot: str | None = None

    @property
    def key(self) -> WorkloadKey:
        """namespace/kind/name of the workload."""
        return WorkloadKey.of(self.namespace, self.kind, self.name)

    @property
    def rid(self) -> ReplicaId:
        """(workload key, replica index)."""
        return ReplicaId(self.key, self.replica)


class NodeStatus(_Status):
    """The whole ``status.yaml`` of one node."""

    node: str
    daemon_version: str = Field(default="", alias="daemonVersion")
    heartbeat: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: Capacity = Field(default_factory=Capacity)
    revision: RevisionStatus = Field(default_factory=RevisionStatus)
    placement_digest: str = Field(default="", alias="placementDigest")
    live_nodes: list[str] = Field(default_factory=list, alias="liveNodes")
    errors: list[ErrorStatus] = Field(default_factory=list)
    workloads: list[ReplicaStatus] = Field(default_factory=list)

    def heartbeat_time(self) -> datetime | None:
        """The heartbeat as an aware datetime, or None if unreadable."""
        try:
            return datetime.fromisoformat(self.heartbeat.replace("Z", "+00:00"))
        except ValueError:
            return None


def utc_now_iso(now: datetime | None = None) -> str:
    """UTC timestamp, second precision, ``Z`` suffix."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The largest status.yaml a node reads from a peer's branch (a few hundred bytes per replica);
# a bigger one is not read at all, and that peer counts as not reporting.
MAX_STATUS_BYTES = 4 * 1024 * 1024

# libyaml is 4-5x faster on records of thousands of rows; the pure-Python classes are the fallback.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(status: NodeStatus) -> bytes:
    """Serialise a status record as YAML with the documented camelCase keys."""
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=200).encode()


def load(raw: bytes) -> NodeStatus | None:
    """Parse a status record; None when unreadable (a broken peer must not break us)."""
    try:
        data = yaml.load(raw, Loader=_Loader)  # a safe loader (CSafeLoader or SafeLoader)
        return NodeStatus.model_validate(data) if isinstance(data, dict) else None
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError):
        return None


def content_key(status: NodeStatus) -> dict[str, Any]:
    """The record minus its heartbeat: a change here is worth a commit before the next heartbeat."""
    return status.model_dump(exclude={"heartbeat"})


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
