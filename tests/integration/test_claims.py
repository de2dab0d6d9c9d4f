"""PersistentVolumeClaims on the real engine: a node-local volume that outlives containers, rollouts and restarts."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import pytest

from gitops.release import release
from gitops.runtime.docker import DockerRuntime
from gitops.volumes import nfs_options
from tests.builders import TEST_IMAGE, VOTING_DB_ROWS, claim, claim_pod, deployment, voting_db
from tests.e2e.test_cluster import CLUSTER
from tests.helpers import (
    DOCKER_HOST,
    Repo,
    bare_repo,
    git,
    make_reconciler,
    managed,
    remove_node_containers,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("docker_engine")

# Counts its starts in the claim's volume, then serves until stopped.
COUNTER = [
    "sh",
    "-c",
    "n=$(cat /data/n 2>/dev/null || echo 0); echo $((n + 1)) > /data/n; trap 'exit 0' TERM; "
    "while true; do sleep 0.2; done",
]


def _counter(node: str) -> str:
    rows = managed(node, state="running")
    if len(rows) != 1:
        return ""
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        try:
            out: bytes = client.containers.get(rows[0]["Id"]).exec_run(["cat", "/data/n"]).output
        except docker.errors.APIError:  # stopped since it was listed
            return ""
    return out.decode().strip()


def _claim_volumes(node: str) -> list[str]:
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        found = client.api.volumes(filters={"label": [f"gitops.node={node}", "gitops.claim"]}) or {}
    return sorted(v["Name"] for v in found.get("Volumes") or [])


def test_claim_volume_keeps_data_across_rollout_and_restart_until_the_claim_is_deleted(
    repo: Repo, node_name: str, tmp_path: Path
) -> None:
    def app(version: str) -> str:
        pod = claim_pod("data")
        return (
            claim("data")
            + "---\n"
            + deployment("db", 1, engine=True, command=COUNTER, grace_s=1, env={"VERSION": version}, **pod)
        )

    state = tmp_path / f"state-{node_name}"
    repo.put("apps/db.yaml", app("1"))
    rec = make_reconciler(str(repo.path), node_name, state)

    def counted(expected: str) -> bool:
        rec.run_pass()
        return _counter(node_name) == expected

    wait_for(lambda: counted("1"), timeout=20, interval=0.3, what="first start counted in the volume")
    assert _claim_volumes(node_name) == [f"gitops.claim.default.data_{node_name}"]
    assert repo.status(node_name)["volumes"] == ["default/data"]

    repo.put("apps/db.yaml", app("2"))  # a spec change: the rollout replaces the container
    wait_for(lambda: counted("2"), timeout=20, interval=0.3, what="the new container sees the old count")

    rec.close()  # a daemon restart: a new process finds the volume by its labels
    rec = make_reconciler(str(repo.path), node_name, state)
    repo.put("apps/db.yaml", app("3"))
    wait_for(lambda: counted("3"), timeout=20, interval=0.3, what="the count survives a daemon restart")

    # Removing the claim from the pod keeps the volume; deleting the claim's document deletes it.
    repo.put("apps/db.yaml", claim("data"))
    wait_for(lambda: rec.run_pass() and not managed(node_name), timeout=20, interval=0.3, what="db removed")
    rec.run_pass()
    assert _claim_volumes(node_name) == [f"gitops.claim.default.data_{node_name}"]
    repo.remove("apps/db.yaml")
    rec.run_pass()
    assert _claim_volumes(node_name) == []
    rec.close()


def test_the_voting_apps_postgres_keeps_its_rows_across_a_spec_change(
    repo: Repo, node_name: str, tmp_path: Path
) -> None:
    repo.put("apps/db.yaml", voting_db(engine=True))
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state")

    def rows() -> list[str]:
        rec.run_pass()
        running = managed(node_name, state="running")
        if len(running) != 1:
            return []
        with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
            out: bytes = client.containers.get(running[0]["Id"]).exec_run(["cat", VOTING_DB_ROWS]).output
        return out.decode().splitlines()

    try:
        wait_for(lambda: rows() == ["row postgres"], timeout=20, interval=0.3, what="the first row")
        first = managed(node_name)[0]["Id"]
        repo.put("apps/db.yaml", voting_db(engine=True, password="rotated"))  # an env change rolls the container
        wait_for(lambda: rows() == ["row postgres", "row rotated"], timeout=20, interval=0.3, what="rows kept")
        assert managed(node_name)[0]["Id"] != first
    finally:
        rec.close()


def test_users_follow_the_volume_and_wait_for_a_release_when_its_node_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    bare = bare_repo(tmp_path)
    work = Repo(tmp_path / "work")
    work.put("cluster.yaml", CLUSTER % "[]")
    work.put(
        "apps/db.yaml",
        claim("data") + "---\n" + deployment("db", 1, engine=True, command=COUNTER, grace_s=1, **claim_pod("data")),
    )
    git(work.path, "push", "-q", str(bare), "main")
    recs = {n: make_reconciler(str(bare), n, tmp_path / f"state-{n}") for n in nodes}

    def holder_runs(*passing: str) -> str:
        for n in passing:
            recs[n].run_pass()
        return next((n for n in nodes if _counter(n)), "")

    try:
        holder = wait_for(lambda: holder_runs(*nodes), timeout=20, interval=0.2, what="db started")
        other = next(n for n in nodes if n != holder)
        holder_runs(*nodes)
        assert status_of(bare, holder)["volumes"] == ["default/data"]
        assert "volumes" not in status_of(bare, other)

        # The holder dies with its containers; its volume stays on its disk, so db runs nowhere.
        recs[holder].close()
        with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
            for row in managed(holder):
                client.api.remove_container(row["Id"], force=True)

        def lost() -> bool:
            recs[other].run_pass()
            rows = status_of(bare, other)["workloads"]
            return any(r["reason"] == "VolumeNodeLost" for r in rows)

        wait_for(lost, timeout=20, interval=0.3, what="VolumeNodeLost")
        for _ in range(3):
            recs[other].run_pass()
            assert not managed(other), "started on an empty volume without a release"

        # The operator releases the dead node's volume (a commit); db starts on the other node.
        for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
            monkeypatch.setenv(var, "operator@example.com" if "EMAIL" in var else "operator")
        release(recs[other].config, "default/data", holder)
        wait_for(lambda: holder_runs(other) == other, timeout=30, interval=0.3, what="db released to the other node")
        assert _counter(other) == "1"  # a new, empty volume: the operator restores data into it
        holder_runs(other)
        assert status_of(bare, other)["volumes"] == ["default/data"]
    finally:
        for rec in recs.values():
            rec.close()
        for n in nodes:
            remove_node_containers(n)


STATEFUL = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: %s
        imagePullPolicy: IfNotPresent
        command: %s
        env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        readinessProbe: {exec: {command: [cat, /data/n]}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""


def test_statefulset_gets_a_volume_per_ordinal_starts_in_order_updates_and_stops_in_reverse(
    repo: Repo, node_name: str, tmp_path: Path
) -> None:
    def put(version: str, replicas: int = 3) -> None:
        command = ["sh", "-c", f'echo "$POD" > /data/pod; : {version}; ' + COUNTER[2]]
        text = STATEFUL % (TEST_IMAGE, json.dumps(command))
        repo.put("apps/web.yaml", text.replace("replicas: 3", f"replicas: {replicas}"))

    put("v1")
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state")
    started: dict[tuple[int, str], int] = {}  # (replica, spec hash) -> the pass that created it
    passes = iter(range(1000))

    def all_up(hashes: int = 1) -> bool:
        rec.run_pass()
        current = next(passes)
        for row in managed(node_name):
            started.setdefault((int(row["Labels"]["gitops.replica"]), row["Labels"]["gitops.spec-hash"]), current)
        running = managed(node_name, state="running")
        return (
            len(running) == 3
            and len({r["Labels"]["gitops.spec-hash"] for r in running}) == 1
            and (len({h for _, h in started}) == hashes)
        )

    try:
        wait_for(all_up, timeout=30, interval=0.3, what="3 ordinals running")
        # OrderedReady: each ordinal is created in a later pass than the one before, once that one is ready.
        first = {r: p for (r, _), p in started.items()}
        assert first[0] < first[1] < first[2], started
        names = [f"gitops.claim.default.data-web-{i}_{node_name}" for i in range(3)]
        assert _claim_volumes(node_name) == names
        with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
            for row in managed(node_name):
                replica = row["Labels"]["gitops.replica"]
                out = client.containers.get(row["Id"]).exec_run(["cat", "/data/pod"]).output
                assert out.decode().strip() == f"web-{replica}"
        rec.run_pass()
        assert repo.status(node_name)["volumes"] == [f"default/data-web-{i}" for i in range(3)]

        # A spec change rolls from the highest ordinal down, each on its own volume.
        v1 = managed(node_name)[0]["Labels"]["gitops.spec-hash"]
        put("v2")
        wait_for(lambda: all_up(hashes=2), timeout=40, interval=0.3, what="rolled to v2")
        updated = {r: p for (r, h), p in started.items() if h != v1}
        assert updated[2] < updated[1] < updated[0], started
        with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
            for row in managed(node_name):
                out = client.containers.get(row["Id"]).exec_run(["cat", "/data/n"]).output
                assert out.decode().strip() == "2", "each ordinal counts its second start on its own volume"

        # Scaled down, the surplus ordinals stop from the highest down; their volumes stay (Retain).
        put("v2", replicas=1)
        gone: dict[int, int] = {}

        def scaled() -> bool:
            rec.run_pass()
            current = next(passes)
            left = {int(r["Labels"]["gitops.replica"]) for r in managed(node_name)}
            for replica in {1, 2} - left:
                gone.setdefault(replica, current)
            return left == {0}

        wait_for(scaled, timeout=30, interval=0.2, what="scaled to 1")
        assert gone[2] < gone[1], gone
        assert len(_claim_volumes(node_name)) == 3
    finally:
        rec.close()


def test_the_engine_accepts_an_nfs_volume_with_the_local_drivers_options(node_name: str) -> None:
    # No NFS server here: the volume is only created (mounting happens when a container starts).
    runtime = DockerRuntime(DOCKER_HOST)
    name = f"gitops.nfs-test_{node_name}"
    options = nfs_options("192.0.2.10", "/export/media", read_only=True)
    try:
        runtime.ensure_volume(name, {"gitops.node": node_name}, "local", options)
        runtime.ensure_volume(name, {"gitops.node": node_name}, "local", options)  # present: left alone
        with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
            found = client.api.inspect_volume(name)
        assert (found["Driver"], found["Options"]) == (
            "local",
            {"type": "nfs", "o": "addr=192.0.2.10,ro", "device": ":/export/media"},
        )
    finally:
        runtime.close()


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GITOPS_CONFIG": "/nonexistent", "GIT_AUTHOR_NAME": "op", "GIT_AUTHOR_EMAIL": "op@x",
           "GIT_COMMITTER_NAME": "op", "GIT_COMMITTER_EMAIL": "op@x"}  # fmt: skip
    engine = ["--docker-host", DOCKER_HOST, "--image", TEST_IMAGE] if args[0] in ("export", "import") else []
    cmd = [sys.executable, "-m", "gitops.cli", "volume", *args, *engine]
    return subprocess.run(cmd, input=stdin, env=env, capture_output=True, timeout=120)


def test_a_drained_claim_moves_with_its_data_by_export_import_and_release(tmp_path: Path) -> None:
    nodes = sorted(f"t-{uuid.uuid4().hex[:8]}" for _ in range(2))
    bare = bare_repo(tmp_path)
    work = Repo(tmp_path / "work")

    def push(cordoned: str) -> None:
        work.put("cluster.yaml", CLUSTER % cordoned)
        git(work.path, "push", "-q", "-f", str(bare), "main")

    work.put("apps/db.yaml", claim("data") + "---\n" + deployment("db", 1, engine=True, command=COUNTER, grace_s=1,
                                                                   **claim_pod("data")))  # fmt: skip
    push("[]")
    recs = {n: make_reconciler(str(bare), n, tmp_path / f"state-{n}") for n in nodes}

    def running_on() -> str:
        for n in nodes:
            recs[n].run_pass()
        return next((n for n in nodes if _counter(n)), "")

    try:
        holder = wait_for(running_on, timeout=20, interval=0.2, what="db started")
        target = next(n for n in nodes if n != holder)
        wait_for(lambda: running_on() and status_of(bare, holder).get("volumes"), timeout=10, what="holder published")
        busy = _cli("export", "default/data", "--node", holder)
        assert busy.returncode == 2 and b"in use" in busy.stderr and b"cordon" in busy.stderr

        # Drain: the cordoned holder stops db (its claim pins it there), so the volume is still.
        push(f"[{holder}]")
        wait_for(lambda: not running_on() and not managed(holder, state="running"), timeout=20, interval=0.3,
                 what="db stopped on the cordoned holder")  # fmt: skip
        exported = _cli("export", "default/data", "--node", holder)
        assert exported.returncode == 0, exported.stderr
        imported = _cli("import", "default/data", "--node", target, "--repo", str(bare), stdin=exported.stdout)
        assert imported.returncode == 0, imported.stderr
        again = _cli("import", "default/data", "--node", target, "--repo", str(bare), stdin=exported.stdout)
        assert again.returncode == 2 and b"already has a volume" in again.stderr

        # Both hold a volume now: db waits for the release, then starts on the copy.
        for _ in range(2):
            assert running_on() == ""
        released = _cli("release", "default/data", "--from", holder, "--repo", str(bare))
        assert released.returncode == 0, released.stderr
        wait_for(lambda: running_on() == target, timeout=30, interval=0.3, what="db started on the copy")
        assert _counter(target) == "2", "the second start counted on the copied data"
    finally:
        for rec in recs.values():
            rec.close()
        for n in nodes:
            remove_node_containers(n)
