"""Convergence at scale: N single-replica Deployments in one commit, ``git push`` -> all running.

Run: PYTHONPATH=. .venv/bin/python bench/converge.py [--n 100 1000] [--nodes 1 3]

For each N (default 100 and 1,000) and each cluster size (default one node and three):
real ``gitops run`` daemons (interval 1 s), each behind its own ``git daemon`` in front of one
bare repository, as in tests/e2e; once every node sees the others and has settled, one
commit adds N files, each one single-replica Deployment of the test image (tests/builders.py
``deployment(engine=True)``, a shell idle until SIGTERM). t0 is taken right before
``git push``; converge_s is t0 -> the engine's start event (``docker events``, read as it
comes) of the N-th managed container of the cluster's nodes; a listing then checks all N still
run. (Polling a listing instead cost the engine CPU the floor does not pay.) Also printed: the
CPU the daemons and their git children used meanwhile. Then the daemons are killed and every
container removed before the next run.

The floor is measured in the same run, before the daemons: N bare ``docker run -d`` (same
image and command; create and start through the Docker API, which is what the CLI does,
without a CLI process per container), on a thread pool whose width is chosen by trying a few (``--threads``) on a
sample first and taking the fastest. floor_s: t0 -> the last start returned.

Goals: N = 1,000 faster than Flux's 256 s (its published benchmark for 1,000
Kustomizations) and within 1.5 x the floor. Ends with one JSON line: ``converge_<N>_s`` (one
node), ``converge_<N>_3nodes_s``, ``floor_<N>_s`` and ``floor_threads``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
from _common import DOCKER_HOST, IDLE, TEST_IMAGE, cpu_ticks, deployment, emit, git, report_table, wait_until

from tests.e2e.test_cluster import Cluster

FLUX_1000_S = 256.0
CLUSTER_YAML = """\
apiVersion: gitops/v1
kind: Cluster
metadata: {name: bench-converge}
spec:
  heartbeatSeconds: 5
  nodeTimeoutSeconds: 30
"""


class Engine:
    """Docker API clients, one per thread, for the floor and for removing containers."""

    def __init__(self) -> None:
        self.local = threading.local()

    def api(self) -> docker.APIClient:
        if not hasattr(self.local, "api"):
            self.local.api = docker.APIClient(base_url=DOCKER_HOST, timeout=300)
        api: docker.APIClient = self.local.api
        return api

    def run_d(self, label: str) -> str:
        """What ``docker run -d`` does: create, then start."""
        cid: str = self.api().create_container(TEST_IMAGE, IDLE, labels={"bench": label})["Id"]
        self.api().start(cid)
        return cid

    def remove(self, cid: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api().remove_container(cid, force=True, v=True)

    def remove_labelled(self, *labels: str, threads: int = 8) -> int:
        """Force-remove every container with all ``labels``; how many there were."""
        ids = [r["Id"] for r in self.api().containers(all=True, filters={"label": list(labels)})]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(self.remove, ids))
        return len(ids)

    def starts(self, n: int, threads: int, label: str) -> float:
        """Seconds for ``n`` create-and-starts on ``threads`` threads."""
        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: self.run_d(label), range(n)))
        return time.monotonic() - t0


class StartWatch:
    """The engine's start events of one cluster's managed containers, as they happen.

    Polling a listing of 1,000 containers twice a second costs the engine a fair share of the
    CPU it starts containers with; the floor pays nothing of the kind. The event stream costs
    nothing and times each start exactly.
    """

    def __init__(self, prefix: str, n: int) -> None:
        self.prefix = prefix
        # ``done`` is set once this many distinct containers have started.
        self.n = n
        self.ids: set[str] = set()
        self.last = 0.0
        self.done = threading.Event()
        self.api = docker.APIClient(base_url=DOCKER_HOST, timeout=None)
        self.stream = self.api.events(
            filters={"type": "container", "event": "start", "label": "gitops.managed=true"}, decode=True
        )
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # the stream closes under us on exit
            for event in self.stream:
                attrs = (event.get("Actor") or {}).get("Attributes") or {}
                if str(attrs.get("gitops.node", "")).startswith(self.prefix):
                    self.ids.add(str(event.get("id")))
                    self.last = time.monotonic()
                    if len(self.ids) >= self.n:
                        self.done.set()

    def __enter__(self) -> StartWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stream.close()
        self.api.close()


def floor(engine: Engine, n: int, choices: list[int], sample: int) -> tuple[float, int]:
    """(seconds for ``n`` bare starts at the best width, that width): widths tried on ``sample`` starts first."""
    label = f"bench-converge-floor-{uuid.uuid4().hex[:6]}"
    try:
        rates = {}
        for threads in choices:
            took = engine.starts(sample, threads, label)
            rates[threads] = sample / took
            engine.remove_labelled(f"bench={label}")
            print(f"  floor sample: {sample} starts on {threads:>2} threads: {took:.2f} s ({rates[threads]:.1f}/s)")
        best = max(rates, key=lambda t: rates[t])
        took = engine.starts(n, best, label)
        print(f"  floor: {n} starts on {best} threads: {took:.2f} s ({n / took:.1f}/s)", flush=True)
        return took, best
    finally:
        engine.remove_labelled(f"bench={label}")


def converge(engine: Engine, n: int, nodes: int) -> float:
    """Seconds from the push of ``n`` Deployments to ``n`` running containers on ``nodes`` daemons."""
    with tempfile.TemporaryDirectory(prefix="bench-converge-") as tmp:
        c = Cluster(Path(tmp))
        c.prefix = "bconv" + uuid.uuid4().hex[:6]
        names = [c.name(chr(ord("a") + i)) for i in range(nodes)]
        try:
            c.push("cluster.yaml", CLUSTER_YAML)
            for i in range(nodes):
                c.start(chr(ord("a") + i))
            wait_until(lambda: all(c.status(x).get("liveNodes") == names for x in names), 60, 0.5,
                       "every node sees the others")  # fmt: skip
            time.sleep(6)  # past the 5 s settling floor: a node that just joined holds back
            for i in range(n):
                c.work.write(f"apps/s{i:04d}.yaml", deployment(f"s{i:04d}", 1, engine=True, command=IDLE))
            git(c.work.path, "add", "-A")
            git(c.work.path, "commit", "-q", "-m", f"{n} services")
            pids = [d.proc.pid for d in c.daemons.values() if d.proc is not None]
            ticks0 = sum(sum(cpu_ticks(p)) for p in pids)
            with StartWatch(c.prefix, n) as starts:
                t0 = time.monotonic()
                git(c.work.path, "push", "-q", "-f", str(c.bare), "main")
                if not starts.done.wait(900):
                    raise RuntimeError(f"only {len(starts.ids)} of {n} started after 900 s")
                took = starts.last - t0
                # What the daemons (and their git children) took from the engine's cores meanwhile.
                cpu_s = (sum(sum(cpu_ticks(p)) for p in pids) - ticks0) / os.sysconf("SC_CLK_TCK")
            running = len(c.containers("gitops.managed=true"))
            if running < n:
                raise RuntimeError(f"{n} started, but only {running} still running")
            print(f"  daemons' CPU from push to all running: {cpu_s:.1f} s ({cpu_s / took:.2f} cores)")
            per_node = {x[-1]: len(c.containers("gitops.managed=true", f"gitops.node={x}")) for x in names}
            print(f"  {n} Deployments on {nodes} node(s): all running after {took:.2f} s, per node {per_node}",
                  flush=True)  # fmt: skip
            return took
        finally:
            for d in c.daemons.values():
                if d.alive():
                    d.kill(9)
            for s in c.servers.values():
                s.stop()
            for x in names:
                engine.remove_labelled(f"gitops.node={x}")
            c.client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--threads", type=int, nargs="+", default=[4, 8, 16, 32], help="floor widths to try")
    ap.add_argument("--floor-sample", type=int, default=50, help="starts per width tried")
    args = ap.parse_args()

    engine = Engine()
    figures: dict[str, float] = {}
    rows: list[tuple[str, str, str, bool | None]] = []
    for n in args.n:
        print(f"\nN = {n}", flush=True)
        floor_s, threads = floor(engine, n, args.threads, min(n, args.floor_sample))
        figures[f"floor_{n}_s"] = floor_s
        figures["floor_threads"] = threads
        for nodes in args.nodes:
            took = converge(engine, n, nodes)
            suffix = "" if nodes == 1 else f"_{nodes}nodes"
            figures[f"converge_{n}{suffix}_s"] = took
            goal = min(FLUX_1000_S * n / 1000, 1.5 * floor_s) if n >= 1000 else 1.5 * floor_s
            rows.append((f"converge_{n}{suffix}_s", f"<= {goal:.1f} s (1.5 floor{', Flux' if n >= 1000 else ''})",
                         f"{took:.2f} s", took <= goal))  # fmt: skip
            rows.append((f"  / floor_{n}_s", "<= 1.5", f"{took / floor_s:.2f}", took <= 1.5 * floor_s))
    report_table("convergence: push -> all running", rows)
    emit(figures)
    return 0 if all(ok for *_, ok in rows if ok is not None) and not any(math.isnan(v) for v in figures.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
