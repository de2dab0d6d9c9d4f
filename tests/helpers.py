"""Shared test helpers: real git repositories, the real Docker Engine, processes, waiting (manifests: builders.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import docker
import yaml

from gitops.config import Config
from gitops.gpu import DeclaredInventory
from gitops.reconcile.reconciler import Reconciler

DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
ROOT = Path(__file__).resolve().parent.parent


def make_reconciler(repo: str, node: str, state_dir: Path, **overrides: Any) -> Reconciler:
    """An in-process node with fixed capacity (8 cores, 16 GiB) and no GPUs, on the test engine."""
    cfg = Config(
        repo=repo,
        node=node,
        state_dir=state_dir,
        secrets_dir=state_dir.parent / "secrets",
        docker_host=DOCKER_HOST,
        # A lone in-process node has no peers to learn of first.
        **{"settle_seconds": 0.0, "cpu_millis": 8000, "memory_mib": 16384, **overrides},
    )
    return Reconciler(cfg, DeclaredInventory([]))


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


class Repo:
    """A real git working repository on disk, used as the cluster repository."""

    def __init__(self, path: Path, branch: str = "main"):
        self.path = path
        self.branch = branch
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", branch)

    def write(self, rel: str, text: str) -> None:
        """Write a file (dedented) without committing."""
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))

    def commit(self, message: str = "change") -> str:
        """Stage everything and commit; return the new head."""
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def put(self, rel: str, text: str, message: str | None = None) -> str:
        """Write one file and commit it."""
        self.write(rel, text)
        return self.commit(message or f"update {rel}")

    def remove(self, rel: str, message: str | None = None) -> str:
        """Delete one file and commit."""
        git(self.path, "rm", "-q", rel)
        return self.commit(message or f"remove {rel}")

    def revert(self, rev: str = "HEAD") -> str:
        """``git revert`` a commit."""
        git(self.path, "revert", "--no-edit", rev)
        return self.head()

    def head(self) -> str:
        """Current head commit."""
        return git(self.path, "rev-parse", "HEAD").strip()

    def status_yaml(self, node: str) -> str:
        """The ``status.yaml`` a node pushed, or '' if none yet."""
        return status_yaml(self.path, node)

    def status(self, node: str) -> dict[str, Any]:
        """The ``status.yaml`` a node pushed, parsed; {} if none yet."""
        return status_of(self.path, node)


def status_yaml(repo: Path, node: str) -> str:
    """The ``status.yaml`` a node pushed to the repository at ``repo`` (bare or not), or '' if none yet."""
    ref = f"refs/heads/gitops/status/{node}:status.yaml"
    proc = subprocess.run(["git", "-C", str(repo), "show", ref], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def status_of(repo: Path, node: str) -> dict[str, Any]:
    """``status_yaml()`` parsed; {} if none yet."""
    data = yaml.safe_load(status_yaml(repo, node))
    return data if isinstance(data, dict) else {}


def managed(node: str, host: str = DOCKER_HOST, state: str | None = None) -> list[dict[str, Any]]:
    """Raw list rows of the containers a node manages on the engine at ``host`` (only those in ``state`` if given)."""
    filters: dict[str, Any] = {"label": ["gitops.managed=true", f"gitops.node={node}"]}
    if state:
        filters["status"] = state
    with contextlib.closing(docker.DockerClient(base_url=host)) as c:
        return list(c.api.containers(all=True, filters=filters))


def remove_node_containers(node: str) -> None:
    """Force-remove every container and volume a test node created."""
    c = docker.DockerClient(base_url=DOCKER_HOST)
    for row in managed(node):
        with contextlib.suppress(docker.errors.NotFound):
            c.api.remove_container(row["Id"], force=True, v=True)
    for vol in (c.api.volumes(filters={"label": [f"gitops.node={node}"]}) or {}).get("Volumes") or []:
        with contextlib.suppress(docker.errors.APIError):
            c.api.remove_volume(vol["Name"], force=True)
    c.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


class DaemonProcess:
    """A real ``gitops run`` process, as systemd would start it."""

    def __init__(
        self,
        repo: str,
        node: str,
        state_dir: Path,
        log: Path,
        interval: float = 2.0,
        docker_host: str = DOCKER_HOST,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.args = [
            str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else "python3",
            "-m",
            "gitops.cli",
            "run",
            "--repo",
            repo,
            "--node",
            node,
            "--state-dir",
            str(state_dir),
            "--interval",
            str(interval),
            "--docker-host",
            docker_host,
            *(extra_args or []),
        ]
        self.env = {
            **os.environ,
            "GITOPS_CONFIG": str(state_dir / "no-config.yaml"),
            "GITOPS_CPU_MILLIS": "8000",
            "GITOPS_MEMORY_MIB": "16384",
            "GITOPS_GPUS": "[]",
            "GITOPS_SECRETS_DIR": str(state_dir / "secrets"),
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        """Start the process (logs appended to ``self.log``)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def kill(self, sig: int = 9) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class SecondEngine:
    """A private dockerd for tests where an engine (and its node) dies; see DESIGN.md section 11."""

    def __init__(self, root: Path):
        # unix socket paths are limited to ~108 bytes: keep it short.
        self.sock = Path(f"/tmp/gd2-{os.getpid()}-{root.name[-6:]}.sock")
        self.host = f"unix://{self.sock}"
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    BRIDGE = "gitops-br2"

    def start(self) -> None:
        """Start dockerd and wait until it answers."""
        # Its own bridge: `--bridge=none` makes dockerd delete the main engine's docker0.
        if subprocess.run(["ip", "link", "show", self.BRIDGE], capture_output=True).returncode != 0:
            for cmd in (
                ["link", "add", "name", self.BRIDGE, "type", "bridge"],
                ["addr", "add", "172.31.250.1/24", "dev", self.BRIDGE],
                ["link", "set", self.BRIDGE, "up"],
            ):
                subprocess.run(["ip", *cmd], check=True)
        args = [
            "dockerd",
            "-H",
            self.host,
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            f"/tmp/gd2x-{self.root.name[-6:]}",
            "--pidfile",
            str(self.root / "dockerd.pid"),
            f"--bridge={self.BRIDGE}",
            "--iptables=false",
            "--ip6tables=false",
        ]
        with (self.root / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, timeout=60, interval=0.3, what=f"dockerd at {self.host}")

    def _answers(self) -> bool:
        try:
            c = docker.DockerClient(base_url=self.host, timeout=5)
            c.ping()
            c.close()
            return True
        except Exception:
            return False

    def load_image(self, image: str) -> None:
        """Copy an image from the main engine (nothing can be pulled here)."""
        save = subprocess.Popen(["docker", "-H", DOCKER_HOST, "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
        save.wait(timeout=60)

    def stop(self, remove_containers: bool = False) -> None:
        """Stop dockerd (its containers die with it unless removed first)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if remove_containers:
            c = docker.DockerClient(base_url=self.host)
            for row in c.api.containers(all=True):
                c.api.remove_container(row["Id"], force=True)
            c.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)


class GitServer:
    """``git daemon`` on 127.0.0.1 serving bare repositories under ``base`` (pushes allowed)."""

    def __init__(self, base: Path, port: int | None = None):
        self.base = base
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str = "cluster.git") -> str:
        """The git:// URL of a repository it serves."""
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitServer:
        """Start serving and wait until it answers; a server already running is kept, not doubled."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        args = ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}",
                f"--base-path={self.base}", "--export-all", "--enable=receive-pack", str(self.base)]  # fmt: skip
        self.proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["git", "ls-remote", self.url()], capture_output=True).returncode == 0,
                 what="git daemon")  # fmt: skip
        return self

    def stop(self) -> None:
        """Stop serving (clients get connection refused)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bare_repo(base: Path, name: str = "cluster.git") -> Path:
    """An empty bare repository with ``main`` as its default branch."""
    path = base / name
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


class Periodic:
    """Calls ``sample()`` every ``period`` seconds in a background thread, as a context manager."""

    period = 0.5

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def sample(self) -> None:
        """One observation; subclasses record what they need."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class SshKey:
    """An ed25519 key pair made by ssh-keygen; ``line`` is its allowed-signers entry."""

    private: Path
    line: str

    @property
    def public(self) -> Path:
        return Path(f"{self.private}.pub")


def ssh_key(directory: Path, name: str, principal: str) -> SshKey:
    """A new key pair in ``directory``, allowed to sign as ``principal``."""
    private = directory / f"{name}.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(private)], check=True)
    kind, blob = Path(f"{private}.pub").read_text().split()[:2]
    return SshKey(private, f'{principal} namespaces="git" {kind} {blob}\n')


def ssh_commit(repo: Repo, key: SshKey, message: str) -> str:
    """Stage everything and commit, signed with ``key``."""
    git(repo.path, "add", "-A")
    git(
        repo.path,
        *("-c", "gpg.format=ssh", "-c", f"user.signingkey={key.public}"),
        *("commit", "-q", "--allow-empty", "-S", "-m", message),
    )
    return repo.head()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples at a Prometheus ``url``, parsed by prometheus-client's own parser: (name, labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
