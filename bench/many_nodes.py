"""Many nodes on one Git server: 100 nodes' real pass logic against one ``git daemon``.

Run: PYTHONPATH=. .venv/bin/python bench/many_nodes.py [--nodes 100] [--procs 2] [--threads 4]

Each simulated node is a real ``Reconciler`` (its own state directory and Git mirror, the
real GitSource, StatusBoard, placement, policy and status code) whose container engine is
tests/fakes.py's in-memory ``FakeRuntime`` behind the same Runtime Protocol. Nodes are spread
over ``--procs`` worker processes; in each, a scheduler runs every node as ``gitops run``
does (gitops/daemon.py): a pass at every interval and whenever ``next_wake_in`` says one is
due, and ``heartbeat()`` every 0.5 s, on ``--threads`` threads for passes and
as many for heartbeats (a node's next heartbeat call waits for its previous one). All of
them fetch from and push to one ``git daemon`` on 127.0.0.1 serving one bare repository.
The repository holds ``--deployments`` Deployments of ``--replicas`` replicas.

Measured (the main process reads the served bare repository and /proc only):

- startup: from the first node started to every node's record listing all nodes live;
- steady state, over ``--window`` seconds: status pushes per second (passes' and heartbeat
  thread's), Git server CPU (utime + stime of the ``git daemon`` process and every git
  process it forked and reaped, from /proc, as cores), each node's ``git fetch`` wall time
  per pass, the bare repository's object storage growth scaled to one simulated day, as
  pushed (loose objects) and after ``git gc`` with cruft packs, as a Git host compacts it
  (unreachable objects of cut status history kept, as for the default two weeks);
- push_converge_s: a commit changing one Deployment's env is pushed; t0 before ``git push``,
  t1 when every node's record names the new revision;
- churn: 10 nodes stop (as if killed: no pass, no heartbeat) and 10 new ones start; t0 then,
  t1 when every live node's record lists exactly the 100 live nodes.

The scheduler's lag (how late passes start against when they were due) is printed: when it
is large, the simulation rather than the Git server is the bottleneck. Ends with one JSON
line: nodes, push_converge_s, churn_settle_s, interval_s, heartbeat_s, pushes_per_s,
git_server_cpu_cores, fetch_ms_per_pass, repo_growth_mib_per_day.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from _common import TEST_IMAGE, deployment, emit, git, report_table, wait_until

from gitops.config import Config
from gitops.gpu import DeclaredInventory
from gitops.reconcile.reconciler import Reconciler
from tests.fakes import FakeRuntime
from tests.helpers import GitServer, Repo, bare_repo

HEARTBEAT_TICK_S = 0.5  # gitops/daemon.py's heartbeat thread period
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cluster_yaml(heartbeat_s: int, timeout_s: int) -> str:
    return f"""\
apiVersion: gitops/v1
kind: Cluster
metadata: {{name: bench-many}}
spec:
  heartbeatSeconds: {heartbeat_s}
  nodeTimeoutSeconds: {timeout_s}
"""


# -- the simulated nodes (worker processes) ----------------------------------------------


class Node:
    """One simulated daemon: a Reconciler on the in-memory engine, scheduled as gitops/daemon.py does."""

    def __init__(self, name: str, url: str, base: Path, interval: float, stagger: bool):
        cfg = Config(repo=url, node=name, state_dir=base / name, secrets_dir=base / name / "secrets",
                     cpu_millis=8000, memory_mib=16384, interval=interval)  # fmt: skip
        self.rec = Reconciler(cfg, DeclaredInventory([]), runtime=FakeRuntime(images={TEST_IMAGE}))
        self.interval = interval
        # The first nodes' passes are spread over an interval, as daemons started at different
        # times; a node joining later passes at once, as a daemon does when it starts.
        self.next_pass = time.monotonic() + (random.uniform(0, interval) if stagger else 0.0)
        self.last_pass = 0.0
        self.running = False
        self.beating = False
        self.alive = True
        self.fetch_s: list[float] = []
        self.lag_s: list[float] = []
        self.pushes = 0
        self.passes = 0
        fetch = self.rec.source.fetch

        def timed_fetch() -> str:
            t = time.monotonic()
            try:
                return fetch()
            finally:
                self.fetch_s.append(time.monotonic() - t)

        self.rec.source.fetch = timed_fetch  # type: ignore[method-assign]

    def run_pass(self) -> None:
        started = time.monotonic()
        self.passes += 1
        self.lag_s.append(max(0.0, started - self.next_pass))
        try:
            if self.rec.run_pass().pushed:
                self.pushes += 1
        except Exception as e:  # a failed pass is retried, as the daemon does
            print(f"{self.rec.node}: pass failed: {e}", file=sys.stderr, flush=True)
        self.last_pass = time.monotonic()
        self.next_pass = min(self.last_pass + self.interval, self.last_pass + self.rec.next_wake_in() + 0.05)
        self.running = False

    def heartbeat(self) -> None:
        try:
            if self.alive and self.rec.heartbeat():
                self.pushes += 1
        finally:
            self.beating = False


def worker(conn: Connection, url: str, base: str, interval: float, threads: int) -> None:
    """Run the nodes the main process names, until told to stop; answer commands with statistics."""
    nodes: dict[str, Node] = {}
    lock = threading.Lock()
    stop = threading.Event()
    pool = ThreadPoolExecutor(threads)
    # Each daemon has its own heartbeat thread: heartbeats never queue behind passes.
    beats = ThreadPoolExecutor(threads)

    def schedule() -> None:
        next_hb = time.monotonic()
        while not stop.wait(0.02):
            now = time.monotonic()
            with lock:
                live = [n for n in nodes.values() if n.alive]
            for n in live:
                if not n.running and now >= n.next_pass:
                    n.running = True
                    pool.submit(n.run_pass)
            if now >= next_hb:
                next_hb = now + HEARTBEAT_TICK_S
                for n in live:
                    if not n.beating:
                        n.beating = True
                        beats.submit(n.heartbeat)

    threading.Thread(target=schedule, daemon=True).start()
    while True:
        cmd, arg = conn.recv()
        if cmd == "start":
            joined = bool(nodes)
            for name in arg:
                node = Node(name, url, Path(base), interval, stagger=not joined)
                with lock:
                    nodes[name] = node
        elif cmd == "kill":
            with lock:
                for name in arg:
                    nodes[name].alive = False
        elif cmd == "stats":
            with lock:
                live = [n for n in nodes.values() if n.alive]
                cpu = os.times()
                stats = {
                    "cpu_s": cpu.user + cpu.system + cpu.children_user + cpu.children_system,
                    "passes": sum(n.passes for n in nodes.values()),
                    "pushes": sum(n.pushes for n in nodes.values()),
                    "fetch_s": [f for n in live for f in n.fetch_s],
                    "lag_s": [x for n in live for x in n.lag_s],
                }
                for n in live:
                    n.fetch_s, n.lag_s = [], []
            conn.send(stats)
            continue
        elif cmd == "stop":
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            beats.shutdown(wait=True, cancel_futures=True)
            conn.send("stopped")
            return
        conn.send("ok")


# -- measuring from outside --------------------------------------------------------------


def records(bare: Path) -> dict[str, dict[str, Any]]:
    """node -> its status record as pushed to the served repository."""
    refs = git(bare, "for-each-ref", "--format=%(refname:lstrip=4)", "refs/heads/gitops/status/").split()
    if not refs:
        return {}
    specs = "".join(f"refs/heads/gitops/status/{n}:status.yaml\n" for n in refs)
    out = subprocess.run(["git", "--git-dir", str(bare), "cat-file", "--batch"], input=specs.encode(),
                         capture_output=True, check=True).stdout  # fmt: skip
    got: dict[str, dict[str, Any]] = {}
    pos = 0
    for name in refs:
        nl = out.index(b"\n", pos)
        header, pos = out[pos:nl].split(), nl + 1
        if len(header) == 3:
            size = int(header[2])
            got[name] = yaml.load(out[pos : pos + size], Loader=yaml.CSafeLoader) or {}
            pos += size + 1
    return got


def git_server_cpu_s(daemon_pid: int) -> float:
    """CPU seconds of the git daemon and every process under it, live or reaped (/proc)."""
    total = 0.0
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = fields
            children.setdefault(int(fields[1]), []).append(int(d))
    todo = [daemon_pid]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is None:
            continue
        # fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        total += sum(int(x) for x in f[11:15]) / CLK_TCK
        todo += children.get(pid, [])
    return total


def gc(bare: Path) -> None:
    """Compact the served repository as a Git host would, unreachable objects kept in a cruft pack."""
    git(bare, "-c", "gc.cruftPacks=true", "gc", "-q")


def disk_bytes(bare: Path) -> int:
    """Bytes of object storage in the repository: loose, packed and garbage (``git count-objects``)."""
    out = git(bare, "count-objects", "-v")
    kib = {k: int(v) for k, v in (line.split(": ") for line in out.splitlines())}
    return 1024 * (kib["size"] + kib["size-pack"] + kib["size-garbage"])


class Sim:
    """The worker processes and the node names each runs."""

    def __init__(self, procs: int, url: str, base: Path, interval: float, threads: int):
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(procs):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=worker, args=(theirs, url, str(base), interval, threads), daemon=True)
            p.start()
            self.conns.append(mine)
            self.procs.append(p)
        self.where: dict[str, int] = {}

    def ask(self, i: int, cmd: str, arg: Any = None) -> Any:
        self.conns[i].send((cmd, arg))
        return self.conns[i].recv()

    def start(self, names: list[str]) -> None:
        for k, name in enumerate(names):
            self.where[name] = k % len(self.conns)
        for i in range(len(self.conns)):
            self.ask(i, "start", [n for n in names if self.where[n] == i])

    def kill(self, names: list[str]) -> None:
        for i in range(len(self.conns)):
            self.ask(i, "kill", [n for n in names if self.where[n] == i])

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu_s": 0.0, "passes": 0, "pushes": 0, "fetch_s": [], "lag_s": []}
        for i in range(len(self.conns)):
            s = self.ask(i, "stats")
            out["cpu_s"] += s["cpu_s"]
            out["passes"] += s["passes"]
            out["pushes"] += s["pushes"]
            out["fetch_s"] += s["fetch_s"]
            out["lag_s"] += s["lag_s"]
        return out

    def close(self) -> None:
        for i, p in enumerate(self.procs):
            if p.is_alive():
                with contextlib.suppress(OSError, EOFError):
                    self.ask(i, "stop")
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def all_see(bare: Path, names: set[str], revision: str | None = None) -> bool:
    recs = records(bare)
    return all(
        set(recs.get(n, {}).get("liveNodes") or ()) == names
        and (revision is None or (recs[n].get("revision") or {}).get("sha") == revision)
        for n in names
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4, help="pass threads per worker process")
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--heartbeat", type=int, default=10)
    ap.add_argument("--timeout", type=int, default=30, help="nodeTimeoutSeconds")
    ap.add_argument("--deployments", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--churn", type=int, default=10)
    args = ap.parse_args()

    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        base = Path(tmp)
        bare = bare_repo(base / "served")
        server = GitServer(base / "served").start()
        assert server.proc is not None
        work = Repo(base / "work")
        work.write("cluster.yaml", cluster_yaml(args.heartbeat, args.timeout))
        for i in range(args.deployments):
            work.write(f"apps/d{i:02d}.yaml", deployment(f"d{i:02d}", args.replicas, engine=True, env={"V": "1"}))
        git(work.path, "add", "-A")
        git(work.path, "commit", "-q", "-m", "start")
        git(work.path, "push", "-q", str(bare), "main")
        names = [f"n{i:03d}" for i in range(args.nodes)]
        sim = Sim(args.procs, server.url(), base / "nodes", args.interval, args.threads)
        rows: list[tuple[str, str, str, bool | None]] = []
        try:
            t0 = time.monotonic()
            sim.start(names)
            wait_until(lambda: all_see(bare, set(names)), 600, 1.0, "every node sees every node")
            startup_s = time.monotonic() - t0
            print(f"startup: {args.nodes} nodes see each other after {startup_s:.1f} s", flush=True)
            time.sleep(args.interval)  # past settling and the first passes' pushes
            sim.stats()

            # steady state
            gc(bare)
            st0, cpu0, disk0, w0 = sim.stats(), git_server_cpu_s(server.proc.pid), disk_bytes(bare), time.monotonic()
            time.sleep(args.window)
            st = sim.stats()
            window = time.monotonic() - w0
            pushes_per_s = (st["pushes"] - st0["pushes"]) / window
            passes = st["passes"] - st0["passes"]
            sim_cpu = (st["cpu_s"] - st0["cpu_s"]) / window
            cpu_cores = (git_server_cpu_s(server.proc.pid) - cpu0) / window
            growth_raw = (disk_bytes(bare) - disk0) / window * 86400 / 2**20
            gc(bare)
            growth = (disk_bytes(bare) - disk0) / window * 86400 / 2**20
            fetch_ms = statistics.median(st["fetch_s"]) * 1000 if st["fetch_s"] else float("nan")
            fetch_p90 = sorted(st["fetch_s"])[int(len(st["fetch_s"]) * 0.9)] * 1000 if st["fetch_s"] else float("nan")
            lag = st["lag_s"]
            lag_p90 = sorted(lag)[int(len(lag) * 0.9)] if lag else float("nan")
            print(
                f"steady state over {window:.0f} s: {pushes_per_s:.2f} pushes/s, git server {cpu_cores:.2f} cores, "
                f"fetch per pass p50 {fetch_ms:.0f} ms p90 {fetch_p90:.0f} ms over {len(st['fetch_s'])} passes, "
                f"repository +{growth_raw:.1f} MiB/day as pushed, +{growth:.1f} MiB/day after gc; "
                f"scheduler lag p90 {lag_p90:.2f} s",
                flush=True,
            )
            print(f"  simulation: {passes / window:.2f} passes/s using {sim_cpu:.2f} cores (git clients included), "
                  f"{sim_cpu * window / max(1, passes) * 1000:.0f} ms CPU per pass", flush=True)  # fmt: skip

            # a push
            work.write("apps/d00.yaml", deployment("d00", args.replicas, engine=True, env={"V": "2"}))
            git(work.path, "commit", "-q", "-am", "v2")
            rev = git(work.path, "rev-parse", "HEAD").strip()
            t0 = time.monotonic()
            git(work.path, "push", "-q", str(bare), "main")
            wait_until(lambda: all_see(bare, set(names), rev), 600, 0.5, "every node on the new revision")
            push_s = time.monotonic() - t0
            print(f"push -> every node's record on it: {push_s:.1f} s", flush=True)

            # churn
            dead, new = names[: args.churn], [f"n{i:03d}" for i in range(args.nodes, args.nodes + args.churn)]
            t0 = time.monotonic()
            sim.kill(dead)
            sim.start(new)
            live = set(names[args.churn :]) | set(new)
            wait_until(lambda: all_see(bare, live), 600, 1.0, "every live node sees exactly the live nodes")
            churn_s = time.monotonic() - t0
            print(f"{args.churn} deaths + {args.churn} joins settled after {churn_s:.1f} s "
                  f"(node timeout {args.timeout} s)", flush=True)  # fmt: skip
            lag = sim.stats()["lag_s"]
        finally:
            sim.close()
            server.stop()
    goal_push = 2 * args.interval
    rows += [
        ("push_converge_s", f"<= {goal_push:.0f} s (2 intervals)", f"{push_s:.1f} s", push_s <= goal_push),
        ("git_server_cpu_cores", "< 1.0", f"{cpu_cores:.2f}", cpu_cores < 1.0),
        ("churn_settle_s", f"(node timeout {args.timeout} s)", f"{churn_s:.1f} s", None),
        ("pushes_per_s", "", f"{pushes_per_s:.2f}", None),
        ("fetch_ms_per_pass", "", f"p50 {fetch_ms:.0f} / p90 {fetch_p90:.0f}", None),
        ("repo_growth_mib_per_day", "", f"{growth:.1f}", None),
    ]
    report_table(f"{args.nodes} nodes on one git daemon ({args.procs} processes x {args.threads} threads, "
                 f"{os.cpu_count()} CPUs; total {time.monotonic() - t_start:.0f} s)", rows)  # fmt: skip
    emit({"nodes": args.nodes, "push_converge_s": push_s, "churn_settle_s": churn_s, "interval_s": args.interval,
          "heartbeat_s": args.heartbeat, "pushes_per_s": pushes_per_s, "git_server_cpu_cores": cpu_cores,
          "fetch_ms_per_pass": fetch_ms, "repo_growth_mib_per_day": growth})  # fmt: skip
    return 0 if push_s <= goal_push and cpu_cores < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
