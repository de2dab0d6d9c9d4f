"""Identity: workload keys, replica ids, and the container labels and names that carry them.

Every node formats and parses these the same way (docs/architecture.md, "Container identity"); this module is the
only place that does either, so the label encoding and its decoding sit side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

LABEL = "gitops."
MANAGED = LABEL + "managed"


class WorkloadKey(str):
    """``namespace/kind/name``: a workload's identity across revisions; a ``str`` that parses itself."""

    __slots__ = ()

    @classmethod
    def of(cls, namespace: str, kind: str, name: str) -> WorkloadKey:
        """Format a key from its parts."""
        return cls(f"{namespace}/{kind}/{name}")

    @classmethod
    def parse(cls, text: str) -> WorkloadKey:
        """Parse ``namespace/kind/name``; ValueError unless all three parts are there."""
        parts = text.split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"not a workload key (namespace/kind/name): {text!r}")
        return cls(text)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        # Fields typed WorkloadKey (placement results) validate as plain strings, then wrap.
        return core_schema.no_info_after_validator_function(cls.parse, core_schema.str_schema())

    @property
    def namespace(self) -> str:
        """The namespace part."""
        return self.split("/", 2)[0]

    @property
    def kind(self) -> str:
        """The kind part."""
        return self.split("/", 2)[1]

    @property
    def name(self) -> str:
        """The name part."""
        return self.split("/", 2)[2]


class ReplicaId(NamedTuple):
    """One replica of one workload: ``(key, index)``, ordered by key then index."""

    key: WorkloadKey
    replica: int

    def __str__(self) -> str:
        return f"{self.key}[{self.replica}]"


def replica_id(key: str, replica: int) -> ReplicaId:
    """A replica id from a key read anywhere (labels, status rows, manifests)."""
    return ReplicaId(key if isinstance(key, WorkloadKey) else WorkloadKey(key), replica)


@dataclass(frozen=True)
class ContainerIdentity:
    """What a managed container's labels say it is."""

    node: str
    rid: ReplicaId
    spec_hash: str
    revision: str
    container: str
    gpu_ids: tuple[str, ...] = ()
    has_emptydir: bool = False
    # "init" (runs to completion), "sidecar" (native sidecar) or "" (an app container)
    role: str = ""
    # The container's lifecycle hooks as canonical JSON: run at start and stop, whatever the spec is by then.
    hooks: str = ""

    def labels(self) -> dict[str, str]:
        """The labels listed in docs/architecture.md, "Container identity"."""
        key = self.rid.key
        return {
            MANAGED: "true",
            LABEL + "node": self.node,
            LABEL + "namespace": key.namespace,
            LABEL + "kind": key.kind,
            LABEL + "name": key.name,
            LABEL + "replica": str(self.rid.replica),
            LABEL + "spec-hash": self.spec_hash,
            LABEL + "revision": self.revision,
            LABEL + "container": self.container,
            LABEL + "gpus": ",".join(self.gpu_ids),
            # Lets removal skip the volume lookup for the (usual) pods without emptyDir.
            LABEL + "emptydir": str(self.has_emptydir).lower(),
            LABEL + "role": self.role,
            LABEL + "hooks": self.hooks,
        }

    def name(self, first_container: str) -> str:
        """Readable, unique Docker name: ``<ns>.<name>.<replica>.<hash8>[.<container>]_<node>``.

        The node suffix matters where several nodes share one engine: a handoff on one
        engine would otherwise collide on the name.
        """
        base = self.pod_prefix()
        if self.container != first_container:
            base += f".{self.container}"
        return f"{base}_{self.node}"

    def pod_prefix(self) -> str:
        """``<ns>.<name>.<replica>.<hash8>``: shared by a replica's containers and volumes."""
        key = self.rid.key
        return f"{key.namespace}.{key.name}.{self.rid.replica}.{self.spec_hash[:8]}"

    def emptydir_volume(self, volume: str) -> str:
        """Name of the Docker volume behind one emptyDir of this replica and spec."""
        return f"gitops.{self.pod_prefix()}.{volume}_{self.node}"


def pod_label_filters(labels: dict[str, str]) -> list[str]:
    """Label filters matching everything of one replica at one spec on one node (its emptyDirs)."""
    keys = ("node", "namespace", "kind", "name", "replica", "spec-hash")
    return [f"{LABEL}{k}={labels.get(LABEL + k, '')}" for k in keys]


@dataclass(frozen=True)
class Observed:
    """A managed container as one list call reports it; its identity decoded from its labels."""

    id: str
    name: str
    labels: dict[str, str]
    state: str  # created | running | paused | restarting | exited | dead | removing
    exit_code: int | None
    created: int
    # (container port, protocol, host port) for each port the engine published.
    published: tuple[tuple[int, str, int], ...] = ()
    # Its address on its Docker network with the network's prefix ("172.17.0.2/16"); "" when it has none of its own.
    network: str = ""

    # Cached: a pass reads these for every container many times (the labels never change).
    @cached_property
    def key(self) -> WorkloadKey:
        """The workload key (namespace/kind/name) this container belongs to."""
        get = self.labels.get
        return WorkloadKey.of(get(LABEL + "namespace", ""), get(LABEL + "kind", ""), get(LABEL + "name", ""))

    @property
    def replica(self) -> int:
        """Replica index from the labels (-1 if unreadable)."""
        try:
            return int(self.labels.get(LABEL + "replica", "-1"))
        except ValueError:
            return -1

    @cached_property
    def rid(self) -> ReplicaId:
        """(workload key, replica index)."""
        return ReplicaId(self.key, self.replica)

    @property
    def spec_hash(self) -> str:
        """Spec hash the container was created from."""
        return self.labels.get(LABEL + "spec-hash", "")

    @property
    def container(self) -> str:
        """Name of the pod container this Docker container runs."""
        return self.labels.get(LABEL + "container", "")

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """GPU UUIDs the container was given."""
        return tuple(u for u in self.labels.get(LABEL + "gpus", "").split(",") if u)

    @property
    def role(self) -> str:
        """``init``, ``sidecar``, or empty for an app container."""
        return self.labels.get(LABEL + "role", "")

    @property
    def hooks(self) -> str:
        """The lifecycle hooks it was created with, as JSON (empty: none)."""
        return self.labels.get(LABEL + "hooks", "")

    @property
    def has_emptydir(self) -> bool:
        """False only when the labels say the pod has no emptyDir volume."""
        return self.labels.get(LABEL + "emptydir") != "false"
