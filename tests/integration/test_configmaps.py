"""ConfigMaps and secret volumes on the real engine: what a container sees, and content changes that roll."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import docker
import pytest

from gitops.secretdigest import DIGEST_KEY_FILE
from tests.builders import config_map, deployment
from tests.helpers import DOCKER_HOST, Repo
from tests.integration.test_single_node import converge, reconciler, running

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

CANARY = "canary-0b1d-secret-volume-do-not-publish"


def write_secret(tmp_path: Path, name: str, key: str, value: str) -> Path:
    path = tmp_path / "secrets" / "default" / name / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    return path


def ids(node: str) -> dict[str, str]:
    """Container id by workload name, of the running containers."""
    return {str(r["Labels"]["gitops.name"]): str(r["Id"]) for r in running(node)}  # type: ignore[index]


def in_container(cid: str, script: str) -> str:
    """What ``script`` prints inside the container."""
    client = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        output: bytes = client.api.exec_start(client.api.exec_create(cid, ["sh", "-c", script]))
        return output.decode()
    finally:
        client.close()


def test_a_container_sees_env_from_config_map_and_secret_volumes(repo: Repo, node_name: str, tmp_path: Path) -> None:
    write_secret(tmp_path, "db", "password", "pw-123\n")
    write_secret(tmp_path, "tls", "tls.key", "KEY")
    write_secret(tmp_path, "tls", "tls.crt", "CRT")
    repo.put("apps/config.yaml", config_map("app", {"MODE": "prod", "app.conf": "listen 80\n"}))
    pod = """\
        volumes:
        - name: conf
          configMap: {name: app, items: [{key: app.conf, path: nginx/app.conf}]}
        - name: tls
          secret:
            secretName: tls
            defaultMode: 0400
            items: [{key: tls.key, path: key}, {key: tls.crt, path: crt, mode: 0644}]
        """
    container = """\
        envFrom:
        - {configMapRef: {name: app}, prefix: APP_}
        - {secretRef: {name: db}}
        volumeMounts:
        - {name: conf, mountPath: /etc/app}
        - {name: conf, mountPath: /app.conf, subPath: nginx/app.conf}
        - {name: tls, mountPath: /tls}
        """
    repo.put("apps/web.yaml", deployment("web", engine=True, pod=pod, container=container))
    rec = reconciler(repo, node_name, tmp_path)
    assert converge(rec).ok
    (cid,) = ids(node_name).values()
    out = in_container(
        cid,
        'echo "mode=$APP_MODE pw=$password"; cat /etc/app/nginx/app.conf /app.conf; '
        "stat -c '%a %n' /etc/app/nginx/app.conf /tls/key /tls/crt; cat /tls/key; echo; "
        "touch /etc/app/x 2>/dev/null && echo writable || echo read-only",
    )
    assert out.splitlines() == [
        "mode=prod pw=pw-123",
        "listen 80",
        "listen 80",
        "644 /etc/app/nginx/app.conf",
        "400 /tls/key",
        "644 /tls/crt",
        "KEY",
        "read-only",
    ]
    files = tmp_path / f"state-{node_name}" / "files"
    assert len(list(files.iterdir())) == 1
    repo.remove("apps/web.yaml")
    assert converge(rec).ok
    assert list(files.iterdir()) == [], "a replica's files go with it"


def test_changing_one_key_rolls_exactly_the_workloads_using_it(repo: Repo, node_name: str, tmp_path: Path) -> None:
    def uses(key: str) -> str:
        return f"env: [{{name: V, valueFrom: {{configMapKeyRef: {{name: app, key: {key}}}}}}}]"

    repo.put("apps/config.yaml", config_map("app", {"MODE": "one", "LEVEL": "info"}))
    repo.put("apps/user.yaml", deployment("user", engine=True, container=uses("MODE")))
    repo.put("apps/bystander.yaml", deployment("bystander", engine=True, container=uses("LEVEL")))
    rec = reconciler(repo, node_name, tmp_path)
    assert converge(rec).ok
    before = ids(node_name)
    repo.put("apps/config.yaml", config_map("app", {"MODE": "two", "LEVEL": "info"}))
    assert converge(rec).ok
    after = ids(node_name)
    assert after["bystander"] == before["bystander"]
    assert after["user"] != before["user"]
    assert in_container(after["user"], "echo $V").strip() == "two"


def test_a_secret_change_rolls_its_users_and_the_value_is_never_published(
    repo: Repo, node_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / DIGEST_KEY_FILE).write_text("shared-digest-key-0123456789abcdef")
    secret = write_secret(tmp_path, "db", "password", CANARY + "-1")
    volume = "volumes: [{name: db, secret: {secretName: db}}]"
    mount = "volumeMounts: [{name: db, mountPath: /db}]"
    repo.put("apps/user.yaml", deployment("user", engine=True, pod=volume, container=mount))
    repo.put("apps/bystander.yaml", deployment("bystander", engine=True))
    rec = reconciler(repo, node_name, tmp_path)
    assert converge(rec).ok
    before = ids(node_name)
    secret.write_text(CANARY + "-2")
    assert converge(rec).ok
    after = ids(node_name)
    assert after["bystander"] == before["bystander"] and after["user"] != before["user"]
    assert in_container(after["user"], "cat /db/password") == CANARY + "-2"

    def git_out(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo.path), *args], capture_output=True, text=True, check=True).stdout

    # Every commit of every branch (the node's status branch among them) with full diffs, and the daemon's log.
    assert f"gitops/status/{node_name}" in git_out("branch", "-a")
    history = git_out("log", "-p", "--all", "--format=%H %B")
    assert CANARY not in history and CANARY not in repo.status_yaml(node_name)
    assert CANARY not in caplog.text
