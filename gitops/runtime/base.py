"""What the reconciler needs from a container engine: the Runtime Protocol and its errors.

The Docker adapter implements it for real; tests wrap or replace it behind the same
Protocol (a slow pull, an engine that hiccups) instead of subclassing the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gitops.identity import Observed
from gitops.runtime.cgroups import ContainerUsage


class RuntimeUnavailable(Exception):
    """The engine does not answer; temporary, the pass is retried."""


class RuntimeFailure(Exception):
    """The engine refused one action (bad image, port in use...); reported per workload."""

    def __init__(self, message: str, reason: str = "RunFailed"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RunRequest:
    """Everything ``docker create`` needs for one container, already resolved."""

    name: str
    image: str
    labels: dict[str, str]
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    env: list[str] = field(default_factory=list)
    # "8080/tcp" -> host port, or None to expose without publishing
    ports: dict[str, int | None] = field(default_factory=dict)
    # Where a port without a host port is published, on a port the engine picks (Service endpoints); None: not at all.
    publish_ip: str | None = None
    nano_cpus: int | None = None
    mem_limit: int | None = None
    binds: list[str] = field(default_factory=list)
    network_mode: str | None = None
    hostname: str | None = None
    # A fixed address on the network ``network_mode`` names (a pod whose first container reads status.podIP).
    ip: str | None = None
    user: str | None = None
    working_dir: str | None = None
    read_only: bool = False
    gpu_ids: tuple[str, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    # "no-new-privileges", "seccomp=unconfined" or "seccomp=<profile JSON>"
    security_opt: tuple[str, ...] = ()
    # "host" to share the host's PID or IPC namespace
    pid_mode: str | None = None
    ipc_mode: str | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    # Supplementary groups (fsGroup), and volume mount paths to give to (root, gid) with setgid before start.
    group_add: tuple[str, ...] = ()
    owned_dirs: tuple[tuple[str, int], ...] = ()
    stop_timeout: int = 30
    # Resolver settings (Service names): nameservers, search domains, resolver options; empty: Docker's.
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()


class ProbeRuntime(Protocol):
    """The part of an engine that probes need: look inside a running container."""

    def inspect(self, cid: str) -> dict[str, Any]:
        """Full inspect of one container."""
        ...

    def exec(self, cid: str, cmd: list[str]) -> tuple[int, str]:
        """Run ``cmd`` inside a running container; return (exit code, output)."""
        ...


class Runtime(ProbeRuntime, Protocol):
    """A container engine as the reconciler and executor use it."""

    def ping(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers."""
        ...

    def list_managed(self, node: str) -> list[Observed]:
        """Every container this node manages, running or not, in one call."""
        ...

    def usage(self, cids: Sequence[str]) -> dict[str, ContainerUsage]:
        """CPU time and memory of each listed container that runs, all at once (autoscaling samples)."""
        ...

    def image_present(self, image: str) -> bool:
        """Whether ``image`` is in the local store."""
        ...

    def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        """Pull ``image`` (with ``auth``: username, password); RuntimeFailure(reason=ImagePullFailed) if refused."""
        ...

    def run(self, req: RunRequest) -> str:
        """Create and start one container; return its id."""
        ...

    def start(self, cid: str) -> None:
        """Start an existing, stopped container."""
        ...

    def stop(self, cid: str, grace_s: int | None = None) -> None:
        """Stop within the grace period (``grace_s``: what a preStop hook left of it), keeping it."""
        ...

    def restart(self, cid: str, grace_s: int | None = None) -> None:
        """Stop within the grace period and start again."""
        ...

    def remove(self, cid: str, grace_s: int | None = None) -> None:
        """Stop within the grace period, then remove; gone already counts as done."""
        ...

    def wait(self, cid: str, timeout_s: float) -> int | None:
        """The exit code once the container has exited, or None if it still runs after ``timeout_s``."""
        ...

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        """Last lines of a container's output."""
        ...

    def ensure_volume(
        self, name: str, labels: dict[str, str], driver: str = "local", options: dict[str, str] | None = None
    ) -> None:
        """Create a named volume (with ``driver`` and its ``options``) if absent."""
        ...

    def remove_volumes(self, label_filters: list[str]) -> None:
        """Remove the named volumes whose labels match every filter."""
        ...

    def list_volumes(self, label_filters: list[str]) -> dict[str, dict[str, str]]:
        """Name -> labels of the named volumes whose labels match every filter."""
        ...

    def pod_network(self, name: str) -> str:
        """The subnet of the bridge network ``name`` that takes fixed addresses; created if absent."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
