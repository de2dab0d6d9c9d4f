"""Shared test helpers: real git repositories, manifests, and the real Docker Engine."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

TEST_IMAGE = "gitops-test/busybox:latest"
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
ROOT = Path(__file__).resolve().parent.parent
# A command that exits promptly on SIGTERM even as PID 1 (busybox sleep would ignore it).
SERVE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return stdout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
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
        try:
            return git(self.path, "show", f"refs/heads/gitops/status/{node}:status.yaml")
        except subprocess.CalledProcessError:
            return ""


def deployment(
    name: str,
    replicas: int = 1,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    extra_container: str = "",
    extra_spec: str = "",
    image: str = TEST_IMAGE,
) -> str:
    """A Deployment manifest running the test image."""
    env_yaml = "".join(f"\n            - {{name: {k}, value: {v!r}}}" for k, v in (env or {}).items())
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2{extra_spec}
      containers:
        - name: main
          image: {image}
          imagePullPolicy: IfNotPresent
          command: {command or SERVE!r}
          env: [{env_yaml}
          ]{extra_container}
"""


def managed(node: str, client: docker.DockerClient | None = None, all_: bool = True) -> list[dict[str, Any]]:
    """Raw list rows of the containers a node manages."""
    c = client or docker.DockerClient(base_url=DOCKER_HOST)
    return list(c.api.containers(all=all_, filters={"label": ["gitops.managed=true", f"gitops.node={node}"]}))


def remove_node_containers(node: str) -> None:
    """Force-remove every container and volume a test node created."""
    c = docker.DockerClient(base_url=DOCKER_HOST)
    for row in managed(node, c):
        try:
            c.api.remove_container(row["Id"], force=True, v=True)
        except docker.errors.NotFound:
            pass
    for vol in (c.api.volumes(filters={"label": [f"gitops.node={node}"]}) or {}).get("Volumes") or []:
        try:
            c.api.remove_volume(vol["Name"], force=True)
        except docker.errors.APIError:
            pass
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
