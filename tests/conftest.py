"""Fixtures that start and clean up real engines, repositories and nodes; the ``docker`` marker.

Every test that needs the real Docker Engine is marked ``docker``, so ``pytest -m "not docker"``
runs the pure suite alone: tests under integration/ and e2e/, and any test using an engine
fixture below. A test elsewhere that reaches the engine some other way marks itself.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.builders import TEST_IMAGE
from tests.helpers import (
    DOCKER_HOST,
    ROOT,
    DaemonProcess,
    Repo,
    SecondEngine,
    remove_node_containers,
)

HERE = Path(__file__).resolve().parent
ENGINE_DIRS = (HERE / "integration", HERE / "e2e")
# Fixtures that reach the engine: node_name removes the node's containers at teardown.
ENGINE_FIXTURES = frozenset({"docker_engine", "second_engine", "daemons", "node_name"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``docker`` every test that needs the engine (see the module docstring)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & ENGINE_FIXTURES or any(item.path.is_relative_to(d) for d in ENGINE_DIRS):
            item.add_marker(pytest.mark.docker)


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


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    """Daemon processes a test starts; SIGTERMed (then killed) at teardown."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        if d.alive():
            try:
                d.kill(15)
            except subprocess.TimeoutExpired:
                d.kill(9)


@pytest.fixture
def second_engine(tmp_path_factory: pytest.TempPathFactory, docker_engine: str) -> Iterator[SecondEngine]:
    """A second, private dockerd (its own socket and data root) holding the test image."""
    engine = SecondEngine(tmp_path_factory.mktemp("dockerd2"))
    engine.start()
    engine.load_image(TEST_IMAGE)
    yield engine
    engine.stop(remove_containers=True)
