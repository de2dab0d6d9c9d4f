"""The Docker adapter: one label-filtered list to observe, one API call per action."""

from __future__ import annotations

import contextlib
import io
import posixpath
import re
import tarfile
import uuid
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions

from gitops.identity import LABEL, MANAGED, Observed
from gitops.runtime.base import RunRequest, RuntimeFailure, RuntimeUnavailable
from gitops.runtime.cgroups import ContainerUsage, read_usage

_EXIT_RE = re.compile(r"Exited \((-?\d+)\)")


def _exit_code(status: str) -> int | None:
    m = _EXIT_RE.search(status or "")
    return int(m.group(1)) if m else None


class DockerRuntime:
    """The Runtime Protocol on one Docker Engine; every failure maps to RuntimeUnavailable or RuntimeFailure."""

    def __init__(self, host: str | None = None, timeout: int = 60):
        # An explicit base_url: docker.from_env() may follow a CLI context instead of DOCKER_HOST.
        self.client = docker.DockerClient(base_url=host or "unix:///var/run/docker.sock", timeout=timeout)
        self.api = self.client.api

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound as e:
            raise RuntimeFailure(e.explanation or str(e), "NotFound") from e
        except docker.errors.APIError as e:
            if e.status_code is not None and e.status_code >= 500 and "connect" in str(e).lower():
                raise RuntimeUnavailable(str(e)) from e
            raise RuntimeFailure(str(e.explanation or e)) from e
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as e:
            raise RuntimeUnavailable(f"docker engine unreachable: {e}") from e

    def ping(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers."""
        self._call(self.api.ping)

    def list_managed(self, node: str) -> list[Observed]:
        """Every container this node manages, running or not, in one call."""
        rows = self._call(self.api.containers, all=True, filters={"label": [f"{MANAGED}=true", f"{LABEL}node={node}"]})
        return [
            Observed(
                id=r["Id"],
                name=(r.get("Names") or ["/"])[0].lstrip("/"),
                labels=r.get("Labels") or {},
                state=r.get("State", ""),
                exit_code=_exit_code(r.get("Status", "")),
                created=int(r.get("Created", 0)),
                published=_published(r.get("Ports") or []),
                network=_network(r.get("NetworkSettings") or {}),
            )
            for r in rows
        ]

    def usage(self, cids: Sequence[str]) -> dict[str, ContainerUsage]:
        """From the host's cgroup files: the engine must run on this host (else nothing is sampled)."""
        return read_usage(cids)

    def inspect(self, cid: str) -> dict[str, Any]:
        """Full inspect of one container."""
        result: dict[str, Any] = self._call(self.api.inspect_container, cid)
        return result

    def image_present(self, image: str) -> bool:
        """Whether ``image`` is in the local store."""
        try:
            self._call(self.api.inspect_image, image)
        except RuntimeFailure:
            return False
        return True

    def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        """Pull ``image`` (with ``auth``: username, password); RuntimeFailure(reason=ImagePullFailed) if refused."""
        repo, tag = _split_image(image)
        try:
            self._call(self.api.pull, repo, tag=tag, auth_config=auth)
        except RuntimeFailure as e:
            raise RuntimeFailure(f"pull {image}: {e}", "ImagePullFailed") from e

    def run(self, req: RunRequest) -> str:
        """Create and start one container; return its id."""
        host_config = self.api.create_host_config(
            port_bindings={
                k: (req.publish_ip,) if v is None else v
                for k, v in req.ports.items()
                if v is not None or req.publish_ip
            }
            or None,
            nano_cpus=req.nano_cpus,
            mem_limit=req.mem_limit,
            binds=req.binds or None,
            network_mode=req.network_mode,
            read_only=req.read_only or None,
            restart_policy={"Name": "no"},
            privileged=req.privileged,
            cap_add=list(req.cap_add) or None,
            cap_drop=list(req.cap_drop) or None,
            security_opt=list(req.security_opt) or None,
            pid_mode=req.pid_mode,
            ipc_mode=req.ipc_mode,
            sysctls=req.sysctls or None,
            group_add=list(req.group_add) or None,
            dns=list(req.dns) or None,
            dns_search=list(req.dns_search) or None,
            dns_opt=list(req.dns_opt) or None,
            device_requests=(
                [docker.types.DeviceRequest(device_ids=list(req.gpu_ids), capabilities=[["gpu"]])]
                if req.gpu_ids
                else None
            ),
        )
        created = self._call(
            self.api.create_container,
            req.image,
            name=req.name,
            command=req.command,
            entrypoint=req.entrypoint,
            environment=req.env,
            labels=req.labels,
            ports=[_port_tuple(p) for p in req.ports] or None,
            user=req.user,
            working_dir=req.working_dir,
            hostname=req.hostname,
            host_config=host_config,
            stop_timeout=req.stop_timeout,
            networking_config=(
                self.api.create_networking_config(
                    {req.network_mode: self.api.create_endpoint_config(ipv4_address=req.ip)}
                )
                if req.ip and req.network_mode
                else None
            ),
        )
        cid: str = created["Id"]
        try:
            self._own_dirs(cid, req)
        except RuntimeFailure:
            # Started later as it stands, it would run without its fsGroup: the retry creates it anew.
            self._call(self.api.remove_container, cid, force=True)
            raise
        # A container whose start fails stays "created": inspectable, and retried with backoff.
        self._call(self.api.start, cid)
        return cid

    def _own_dirs(self, cid: str, req: RunRequest) -> None:
        """Give each of ``req.owned_dirs`` to its group, as the kubelet applies fsGroup (the engine chowns, not us)."""
        if not req.owned_dirs:
            return
        target, helper = cid, None
        if req.read_only:
            # The engine extracts nothing onto a read-only root filesystem, even at a volume's mount
            # point: a container never started, holding the same volumes, takes the archive instead.
            owned = {path for path, _ in req.owned_dirs}
            binds = [b for b in req.binds if b.split(":")[1] in owned]
            host_config = self.api.create_host_config(binds=binds, network_mode="none")
            target = helper = self._call(self.api.create_container, req.image, ["true"], host_config=host_config)["Id"]
        try:
            for path, gid in req.owned_dirs:
                archive = _owned_dir(posixpath.basename(path), gid)
                self._call(self.api.put_archive, target, posixpath.dirname(path), archive)
        finally:
            if helper is not None:
                self._call(self.api.remove_container, helper)

    def start(self, cid: str) -> None:
        """Start an existing, stopped container."""
        self._call(self.api.start, cid)

    def stop(self, cid: str, grace_s: int | None = None) -> None:
        """Stop within the container's grace period, keeping it (and its logs)."""
        self._stop(cid, grace_s)

    def restart(self, cid: str, grace_s: int | None = None) -> None:
        """Stop within the container's grace period and start it again (liveness failure)."""
        self._stop(cid, grace_s)
        self._call(self.api.start, cid)

    def remove(self, cid: str, grace_s: int | None = None) -> None:
        """Stop within the container's own grace period, then remove; gone already counts as done."""
        try:
            self._stop(cid, grace_s)
            self._call(self.api.remove_container, cid, v=True)
        except RuntimeFailure as e:
            if e.reason != "NotFound":
                raise

    def _stop(self, cid: str, grace_s: int | None) -> None:
        # Passing the container's own grace period lets the HTTP call wait that long plus the
        # client timeout; without it docker-py allows 10 s, and a 120 s grace would time out.
        if grace_s is None:
            info = self.inspect(cid)
            grace = (info.get("Config") or {}).get("StopTimeout")
            grace_s = grace if isinstance(grace, int) else 10
        self._call(self.api.stop, cid, timeout=grace_s)

    def wait(self, cid: str, timeout_s: float) -> int | None:
        """The exit code once the container has exited, or None if it still runs after ``timeout_s``."""
        try:
            result = self.api.wait(cid, timeout=timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as e:
            # docker-py reports a read timeout on the long-polled wait as either of these.
            if isinstance(e, requests.exceptions.ReadTimeout) or "timed out" in str(e).lower():
                return None
            raise RuntimeUnavailable(f"docker engine unreachable: {e}") from e
        except docker.errors.NotFound as e:
            raise RuntimeFailure(e.explanation or str(e), "NotFound") from e
        except docker.errors.APIError as e:
            raise RuntimeFailure(str(e.explanation or e)) from e
        code = result.get("StatusCode")
        return code if isinstance(code, int) else -1

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        """Last lines of a container's output, for failure reports."""
        try:
            raw: bytes = self._call(self.api.logs, cid, tail=lines, stdout=True, stderr=True)
        except RuntimeFailure:
            return ""
        return raw.decode(errors="replace")[-2000:]

    def exec(self, cid: str, cmd: list[str]) -> tuple[int, str]:
        """Run ``cmd`` inside a running container; return (exit code, output)."""
        ex = self._call(self.api.exec_create, cid, cmd, stdout=True, stderr=True)
        out: bytes = self._call(self.api.exec_start, ex["Id"])
        code = self._call(self.api.exec_inspect, ex["Id"]).get("ExitCode")
        return (code if isinstance(code, int) else -1), out.decode(errors="replace")

    def ensure_volume(
        self, name: str, labels: dict[str, str], driver: str = "local", options: dict[str, str] | None = None
    ) -> None:
        """Create a named volume (with ``driver`` and its ``options``) if absent."""
        self._call(self.api.create_volume, name=name, driver=driver, driver_opts=options or None, labels=labels)

    def remove_volumes(self, label_filters: list[str]) -> None:
        """Remove the named volumes whose labels match every filter."""
        found = self._call(self.api.volumes, filters={"label": label_filters}) or {}
        for vol in found.get("Volumes") or []:
            # Still in use by a container being replaced: it goes with that container's removal.
            with contextlib.suppress(RuntimeFailure):
                self._call(self.api.remove_volume, vol["Name"])

    def list_volumes(self, label_filters: list[str]) -> dict[str, dict[str, str]]:
        """Name -> labels of the named volumes whose labels match every filter."""
        found = self._call(self.api.volumes, filters={"label": label_filters}) or {}
        return {vol["Name"]: vol.get("Labels") or {} for vol in found.get("Volumes") or []}

    def pod_network(self, name: str) -> str:
        """The subnet of the bridge network ``name`` that takes fixed addresses; created if absent.

        Docker gives fixed addresses only on a network created with a subnet: the first create
        lets Docker pick a subnet that is free on this host, the second names it.
        """
        try:
            return _subnet(self._call(self.api.inspect_network, name))
        except RuntimeFailure as e:
            if e.reason != "NotFound":
                raise
        labels = {MANAGED: "true"}
        probe = self._call(self.api.create_network, f"{name}-probe-{uuid.uuid4().hex[:8]}", labels=labels)
        try:
            subnet = _subnet(self._call(self.api.inspect_network, probe["Id"]))
        finally:
            self._call(self.api.remove_network, probe["Id"])
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        # Another node on this engine may have created it meanwhile: then theirs is used.
        with contextlib.suppress(RuntimeFailure):
            self._call(self.api.create_network, name, driver="bridge", ipam=ipam, labels=labels, check_duplicate=True)
        return _subnet(self._call(self.api.inspect_network, name))


def _subnet(info: dict[str, Any]) -> str:
    configs = (info.get("IPAM") or {}).get("Config") or []
    subnet = next((c.get("Subnet") for c in configs if c.get("Subnet") and ":" not in c["Subnet"]), None)
    if not subnet:
        raise RuntimeFailure(f"network {info.get('Name')} has no IPv4 subnet", "RunFailed")
    return str(subnet)


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        return image, ""
    name, _, tag = image.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return image, "latest"


def _published(ports: list[dict[str, Any]]) -> tuple[tuple[int, str, int], ...]:
    """(container port, protocol, host port) of each published port; Docker lists IPv4 and IPv6 bindings apart."""
    return tuple(
        sorted({(p["PrivatePort"], p.get("Type", "tcp"), p["PublicPort"]) for p in ports if p.get("PublicPort")})
    )


def _network(settings: dict[str, Any]) -> str:
    """The container's address and prefix on its first network with one ("" for host or a shared namespace)."""
    for net in (settings.get("Networks") or {}).values():
        if (net or {}).get("IPAddress"):
            return f"{net['IPAddress']}/{net.get('IPPrefixLen') or 32}"
    return ""


def _port_tuple(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto or "tcp"


def _owned_dir(name: str, gid: int) -> bytes:
    """A tar of one directory entry, root:``gid``, setgid and group-writable (extracted without copyUIDGID)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.uid, info.gid, info.mode = 0, gid, 0o2775
        tar.addfile(info)
    return buf.getvalue()
