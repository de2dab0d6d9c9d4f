"""Coordination under ordinary trouble: entrypoints that ignore SIGTERM, nodes starting together,
heartbeats while stops run, slow pulls, broken or vanished status branches. Several daemons,
real Docker and git daemon, sampled every 0.5 s."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.config import Config
from gitops.daemon import Daemon
from gitops.gpu import DeclaredInventory
from gitops.reconcile.reconciler import Reconciler
from gitops.runtime.docker import DockerRuntime
from tests.builders import deployment
from tests.e2e.test_cluster import CLUSTER, Cluster, Sampler
from tests.helpers import DOCKER_HOST, GitServer, remove_node_containers, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

# Like many real entrypoints: PID 1 without a TERM handler, so a stop waits out the grace period.
STUBBORN = ["sleep", "3600"]
READY = "readinessProbe: {exec: {command: [cat, /proc/1/cmdline]}, periodSeconds: 1}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


def commit_times(bare: Path, node: str) -> list[int]:
    """Commit times (epoch seconds) on a node's status branch, oldest first."""
    out = subprocess.run(
        ["git", "--git-dir", str(bare), "log", "--format=%ct", f"refs/heads/gitops/status/{node}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(int(t) for t in out.split())


def test_sigterm_ignoring_replicas_start_together_fail_over_and_scale_down(cluster: Cluster) -> None:
    c = cluster
    a, b, cc = (c.name(x) for x in "abc")
    c.push("cluster.yaml", CLUSTER % "[]")
    # The default 30 s grace period, as in the report this test comes from.
    c.push("apps/web.yaml", deployment("web", 6, engine=True, command=STUBBORN, grace_s=30))
    with Sampler(c, "web") as s:
        t0 = time.monotonic()
        for short in "abc":
            c.start(short)
        # Each node settles 5 s after its first record, then starts its share; a loaded machine
        # takes seconds to start three Python processes (imports, clones, first pushes).
        wait_for(lambda: c.running("web") == {a: 2, b: 2, cc: 2}, timeout=30, interval=0.25, what="2/2/2")
        took = time.monotonic() - t0
        time.sleep(2)
    assert max(s.samples) <= 6 + 1, f"over-replicated: {s.per_node}"
    assert c.running("web") == {a: 2, b: 2, cc: 2}, s.per_node
    print(f"2/2/2 after {took:.1f}s; most copies seen {max(s.samples)}")

    # Kill node c with its containers: only its replicas move, within the timeout and two intervals.
    survivors = c.ids("web", a) | c.ids("web", b)
    c.daemons[cc].kill(9)
    remove_node_containers(cc)
    t0 = time.monotonic()
    wait_for(lambda: sum(c.running("web").values()) == 6, timeout=5 + 2 + 10, interval=0.25, what="failover")
    assert time.monotonic() - t0 <= 5 + 2 + 3
    assert survivors <= c.ids("web", a) | c.ids("web", b), "a surviving replica moved"

    # Scale to zero: each node stops three SIGTERM-ignoring containers at once, in about one grace
    # period, and its heartbeats keep landing meanwhile.
    before = {n: len(commit_times(c.bare, n)) for n in (a, b)}
    t0 = time.monotonic()
    c.push("apps/web.yaml", deployment("web", 0, engine=True, command=STUBBORN, grace_s=30))
    wait_for(lambda: not c.running("web"), timeout=30 + 15, interval=0.5, what="all stopped")
    took = time.monotonic() - t0
    assert took < 30 + 10, f"scale-down took {took:.0f}s: stops ran one after another"
    for n in (a, b):
        times = commit_times(c.bare, n)[before[n] :]
        gaps = [t2 - t1 for t1, t2 in itertools.pairwise(times)]
        print(f"{n}: {len(times)} status commits during the stops, largest gap {max(gaps)}s")
        # heartbeatSeconds is 1; commit times have one-second resolution.
        assert len(times) >= took * 0.6 and max(gaps) <= 3, gaps


def test_readiness_gated_rollout_of_sigterm_ignoring_replicas(cluster: Cluster) -> None:
    c = cluster
    nodes = [c.name(x) for x in "abc"]
    c.push("cluster.yaml", CLUSTER % "[]")

    def web(version: str, probe: str = READY) -> str:
        return deployment("web", 4, engine=True, command=STUBBORN, grace_s=30, env={"V": version}, container=probe)

    c.push("apps/web.yaml", web("1"))
    for short in "abc":
        c.start(short)

    def rows() -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for n in nodes:
            out += [r for r in c.status(n).get("workloads", []) or [] if r.get("name") == "web"]
        return out

    def on_spec(spec: str) -> bool:
        serving = [r for r in rows() if r["state"] == "ready" and r.get("reason") not in ("Terminating", "Handoff")]
        return (
            len(serving) == 4
            and {r["specHash"] for r in serving} == {spec}
            and len({r["replica"] for r in serving}) == 4
        )

    wait_for(lambda: on_spec(str(rows()[0]["specHash"])) if rows() else False, timeout=30, interval=0.5, what="v1")
    old = str(rows()[0]["specHash"])
    t0 = time.monotonic()
    c.push("apps/web.yaml", web("2"))

    def updated() -> bool:
        new = {str(r["specHash"]) for r in rows()} - {old}
        return len(new) == 1 and on_spec(new.pop())

    wait_for(updated, timeout=30, interval=0.5, what="v2 everywhere")
    print(f"rollout settled in {time.monotonic() - t0:.1f}s")

    # A spec that never becomes ready halts at its deadline with one replica touched (maxUnavailable 0, maxSurge 1).
    never = "readinessProbe: {exec: {command: ['false']}, periodSeconds: 1}"
    bad = web("3", never).replace("  selector:", "  progressDeadlineSeconds: 6\n  selector:")
    with Sampler(c, "web"):
        c.push("apps/web.yaml", bad)
        halted = wait_for(lambda: [r for r in rows() if r.get("reason") == "RolloutFailed"], timeout=40, interval=0.5,
                          what="rollout halted")  # fmt: skip
        time.sleep(3)
    new_hash = str(halted[0]["failedSpecHash"])
    touched = {r["replica"] for r in rows() if r["specHash"] == new_hash and r.get("container")}
    assert len(touched) <= 1, rows()


class SlowPulls:
    """The real engine, with every image pull taking ``delay`` seconds (a slow registry)."""

    def __init__(self, inner: DockerRuntime, delay: float):
        self.inner, self.delay = inner, delay

    def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        time.sleep(self.delay)
        self.inner.pull(image, auth)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def push_raw_status(c: Cluster, node: str, content: bytes) -> None:
    """Replace a node's status branch on the server with a commit holding ``content`` (a hostile writer)."""

    def run(*args: str, stdin: bytes | None = None) -> str:
        return (
            subprocess.run(["git", "--git-dir", str(c.bare), *args], input=stdin, capture_output=True, check=True)
            .stdout.decode()
            .strip()
        )

    blob = run("hash-object", "-w", "--stdin", stdin=content)
    tree = run("mktree", stdin=f"100644 blob {blob}\tstatus.yaml\n".encode())
    env_commit = subprocess.run(
        ["git", "--git-dir", str(c.bare), "commit-tree", tree, "-m", "hostile"],
        capture_output=True, check=True, env={"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x",
                                              "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x"},
    ).stdout.decode().strip()  # fmt: skip
    run("update-ref", f"refs/heads/gitops/status/{node}", env_commit)


def test_exclusive_work_never_runs_twice_through_slow_pulls_and_broken_status(cluster: Cluster) -> None:
    c = cluster
    a, b = c.name("a"), c.name("b")
    c.push("cluster.yaml", CLUSTER % "[]")
    # Always: the owner pulls (slowly: 60 s, twelve node timeouts) before it can start.
    db = deployment("db", 1, engine=True, command=STUBBORN, grace_s=1, spec="strategy: {type: Recreate}")
    c.push("apps/db.yaml", db.replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Always"))
    server = GitServer(c.bare.parent).start()
    c.servers[a] = server
    daemons: list[Daemon] = []
    threads: list[threading.Thread] = []
    for node in (a, b):
        cfg = Config(
            repo=server.url(), node=node, state_dir=c.tmp / f"state-{node}", interval=1, docker_host=DOCKER_HOST,
            cpu_millis=8000, memory_mib=16384,
        )  # fmt: skip
        # The same Runtime Protocol, wrapped: nothing in the daemon knows pulls are slow.
        rec = Reconciler(cfg, DeclaredInventory([]), runtime=SlowPulls(DockerRuntime(DOCKER_HOST), 60.0))  # type: ignore[arg-type]
        daemons.append(Daemon(cfg, rec))
        threads.append(threading.Thread(target=daemons[-1].run, daemon=True))
    try:
        with Sampler(c, "db") as s:
            for t in threads:
                t.start()
            owner = wait_for(lambda: next(iter(c.running("db")), None), timeout=100, interval=0.5, what="db running")
            # Its status branch vanishes, then holds garbage, then a record with a naive heartbeat:
            # the peer keeps its last good view of the owner and starts nothing.
            subprocess.run(["git", "--git-dir", str(c.bare), "update-ref", "-d", f"refs/heads/gitops/status/{owner}"],
                           check=True)  # fmt: skip
            time.sleep(3)
            push_raw_status(c, owner, b"\x00\xff not yaml: [")
            time.sleep(3)
            push_raw_status(c, owner, f"node: {owner}\nheartbeat: 2026-01-01T00:00:00\n".encode())
            time.sleep(3)
        assert max(s.samples) <= 1, f"two copies ran at once: {s.samples}"
        assert c.running("db") == {owner: 1}
    finally:
        for d in daemons:
            d.stop()
        for t in threads:
            t.join(timeout=60)
        for node in (a, b):
            remove_node_containers(node)
