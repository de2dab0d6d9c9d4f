"""Fixtures that start and clean up real engines, repositories and nodes."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.helpers import DOCKER_HOST, ROOT, TEST_IMAGE, Repo, remove_node_containers


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A real Docker Engine with the test image; started by scripts/docker-up.sh if needed."""
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST)
        client.ping()
        client.images.get(TEST_IMAGE)
    except Exception:
        subprocess.run(["bash", str(ROOT / "scripts" / "docker-up.sh")], check=True)
        client = docker.DockerClient(base_url=DOCKER_HOST)
    client.close()
    return DOCKER_HOST


@pytest.fixture
def node_name() -> Iterator[str]:
    """A unique node name; every container it created is removed afterwards."""
    name = "t-" + uuid.uuid4().hex[:8]
    yield name
    remove_node_containers(name)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """An empty cluster repository with one initial commit on main."""
    r = Repo(tmp_path / "cluster")
    r.commit("init")
    return r
