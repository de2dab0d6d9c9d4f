"""What parsing a repository of manifests yields: workloads, cluster settings, errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gitops.spec import PodSpec, WorkloadKind, spec_hash


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestError(_Model):
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


class JobSpec(_Model):
    """Run-to-completion settings of a Job (or a CronJob's job template)."""

    completions: int = 1
    parallelism: int = 1
    backoff_limit: int = 6
    active_deadline_s: int | None = None


class CronSpec(_Model):
    """Schedule of a CronJob; ``schedule`` is five cron fields, or six with seconds first."""

    schedule: str
    time_zone: str = "UTC"
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    starting_deadline_s: int | None = None
    successful_history: int = 3
    failed_history: int = 1
    suspend: bool = False


class Workload(_Model):
    """A resolved Deployment, DaemonSet, Job or CronJob."""

    kind: WorkloadKind
    namespace: str = "default"
    name: str
    file: str
    line: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    replicas: int = 1
    pod: PodSpec
    node_selector: dict[str, str] = Field(default_factory=dict)
    strategy: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    # Already resolved against ``replicas`` (Kubernetes rounds unavailable down, surge up).
    max_unavailable: int = 0
    max_surge: int = 1
    progress_deadline_s: int = 600
    min_ready_s: int = 0
    job: JobSpec | None = None
    cron: CronSpec | None = None

    @property
    def key(self) -> str:
        """Stable identity across revisions: namespace/kind/name."""
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def spec_hash(self) -> str:
        """Hash of the pod spec every replica runs."""
        return spec_hash(self.pod)

    @property
    def exclusive(self) -> bool:
        """Break-before-make when moving: Recreate strategy or host-volume backed."""
        return self.strategy == "Recreate" or self.pod.is_exclusive()


class ClusterSpec(_Model):
    """The optional ``gitops/v1 Cluster`` document."""

    heartbeat_seconds: int = 10
    node_timeout_seconds: int = 30
    cordoned: tuple[str, ...] = ()


class FileResult(_Model):
    """Everything one file yields; pure in the file's path and bytes, so cacheable by blob id."""

    workloads: tuple[Workload, ...] = ()
    cluster: ClusterSpec | None = None
    errors: tuple[ManifestError, ...] = ()
    warnings: tuple[str, ...] = ()
    # Keys (namespace/kind/name) of documents that named a workload but did not validate.
    invalid_keys: tuple[str, ...] = ()
    # The file could not be read, or holds a document that cannot be identified: keep all it held.
    unreadable: bool = False


class ManifestSet(_Model):
    """All manifests of one revision."""

    workloads: tuple[Workload, ...] = ()
    cluster: ClusterSpec = ClusterSpec()
    errors: tuple[ManifestError, ...] = ()
    warnings: tuple[str, ...] = ()
    invalid_keys: tuple[str, ...] = ()
    # Files that failed so badly no document could be read (YAML syntax, size, encoding).
    unreadable_files: tuple[str, ...] = ()
