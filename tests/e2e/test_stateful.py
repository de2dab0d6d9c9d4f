"""A StatefulSet across three daemons: ordered starts, a readiness-gated rolling update, volumes that stay put."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import docker.errors
import pytest

from tests.builders import TEST_IMAGE
from tests.e2e.test_cluster import CLUSTER, Cluster
from tests.e2e.test_cluster import cluster as cluster  # the fixture
from tests.helpers import ROOT, managed, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

# Each start appends "<pod> <version>" to the ordinal's volume; ready 1 s after start at the soonest: gaps show gating.
STATEFUL = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 3
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: %s
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "$POD $VERSION" >> /data/log; trap "exit 0" TERM; while true; do sleep 0.2; done']
        env:
        - {name: VERSION, value: %s}
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        readinessProbe: {exec: {command: [cat, /data/log]}, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 5}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""
READY_AFTER_S = 1


def _web(c: Cluster, all_: bool = False) -> dict[int, dict[str, str]]:
    """Ordinal -> {node, id, version, started} of web's running (or, with ``all_``, newest) containers."""
    out: dict[int, dict[str, str]] = {}
    for row in c.containers("gitops.managed=true", "gitops.name=web", all_=all_):
        try:
            info = c.client.api.inspect_container(row["Id"])
        except docker.errors.NotFound:
            continue  # removed by its daemon since the listing (an old container of the rollout)
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        replica = int(row["Labels"]["gitops.replica"])
        if replica in out and out[replica]["started"] > info["State"]["StartedAt"]:
            continue
        out[replica] = {"node": row["Labels"]["gitops.node"], "id": row["Id"], "version": env["VERSION"],
                        "started": info["State"]["StartedAt"]}  # fmt: skip
    return out


def _log(c: Cluster, container: str) -> list[str]:
    out: bytes = c.client.containers.get(container).exec_run(["cat", "/data/log"]).output
    return out.decode().splitlines()


def _at(stamp: str) -> float:
    """An engine timestamp (nanoseconds, ``Z``) as seconds since the epoch."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


def _all_on(c: Cluster, version: str) -> dict[int, dict[str, str]] | None:
    web = _web(c)
    return web if sorted(web) == [0, 1, 2] and {w["version"] for w in web.values()} == {version} else None


def _gitops(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GITOPS_CONFIG": str(c.tmp / "no-config.yaml"),
           "GIT_AUTHOR_NAME": "op", "GIT_AUTHOR_EMAIL": "op@example.com",
           "GIT_COMMITTER_NAME": "op", "GIT_COMMITTER_EMAIL": "op@example.com"}  # fmt: skip
    cmd = [sys.executable, "-m", "gitops.cli", *args, "--repo", str(c.bare), "--state-dir", str(c.tmp / "cli")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_statefulset_keeps_each_ordinals_data_on_its_node_and_waits_for_a_release_when_it_dies(
    cluster: Cluster,
) -> None:
    c = cluster
    nodes = [c.name(x) for x in "abc"]
    c.push("cluster.yaml", CLUSTER % "[]")
    c.push("apps/web.yaml", STATEFUL % (TEST_IMAGE, "v1"))
    for short in "abc":
        c.start(short)
    first = wait_for(lambda: _all_on(c, "v1"), timeout=90, interval=0.3, what="web-0..2 running v1")
    # OrderedReady: each ordinal starts only once the one before is ready.
    for i in (1, 2):
        gap = _at(first[i]["started"]) - _at(first[i - 1]["started"])
        assert gap >= READY_AFTER_S, f"web-{i} started {gap:.1f}s after web-{i - 1}"
    home = {i: w["node"] for i, w in first.items()}
    for i, w in first.items():
        assert _log(c, w["id"]) == [f"web-{i} v1"]

    # Every daemon restarts, and the update lands while they are down: the new daemons find each
    # ordinal's volume by its labels and roll from the highest ordinal down, each gated on readiness.
    for d in c.daemons.values():
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
    for d in c.daemons.values():
        d.kill(signal.SIGTERM)  # waits for the exit
    c.push("apps/web.yaml", STATEFUL % (TEST_IMAGE, "v2"))
    for d in c.daemons.values():
        d.start()
    second = wait_for(lambda: _all_on(c, "v2"), timeout=90, interval=0.3, what="web rolled to v2")
    for i in (0, 1):
        gap = _at(second[i]["started"]) - _at(second[i + 1]["started"])
        assert gap >= READY_AFTER_S, f"web-{i} updated {gap:.1f}s after web-{i + 1}"
    for i, w in second.items():
        assert w["node"] == home[i], f"web-{i} moved from {home[i]} to {w['node']}"
        assert _log(c, w["id"]) == [f"web-{i} v1", f"web-{i} v2"]

    # Per-replica names (`web-0.web` from another workload's container) are asserted with the Services
    # data path, in tests/integration/test_services.py.

    # The node of web-1 dies with its containers; its volume is still on its disk, so web-1 runs nowhere.
    lost = home[1]
    c.daemons[lost].kill(9)
    for row in managed(lost):
        c.client.api.remove_container(row["Id"], force=True)
    others = [n for n in nodes if n != lost]

    def volume_node_lost() -> bool:
        # One live node speaks for replicas that run nowhere.
        rows = [r for n in others for r in c.status(n).get("workloads") or []]  # type: ignore[attr-defined]
        return any(r["replica"] == 1 and r.get("reason") == "VolumeNodeLost" for r in rows)

    wait_for(volume_node_lost, timeout=20, interval=0.3, what="web-1 reported VolumeNodeLost")
    shown = _gitops(c, "status")
    assert "VolumeNodeLost" in shown.stdout and "default/data-web-1" in shown.stdout, shown.stdout + shown.stderr
    time.sleep(1)
    assert 1 not in _web(c), "web-1 started on an empty volume without a release"

    # The documented release brings it back on another node, on a new (empty) volume.
    done = _gitops(c, "volume", "release", "default/data-web-1", "--from", lost)
    assert done.returncode == 0, done.stderr
    back = wait_for(lambda: _web(c).get(1), timeout=30, interval=0.3, what="web-1 back after the release")
    assert back["node"] in others
    assert _log(c, back["id"]) == ["web-1 v2"]

    def claim_node() -> str | None:
        claims = json.loads(_gitops(c, "status", "-o", "json").stdout)["claims"]
        return next((x["node"] for x in claims if x["claim"] == "default/data-web-1"), None)

    wait_for(lambda: claim_node() == back["node"], timeout=15, interval=0.5, what="gitops status shows the new node")
