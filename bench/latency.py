"""Deploy latency: ``git commit`` in a local repository -> the new container running.

Run: python bench/latency.py [--commits 20] [--mode update|add]

A real daemon process (``python -m gitops.cli run``) tracks a local repository at a 30 s
interval, so every reaction comes from its branch watcher, not the timer. Each commit
changes the Deployment (``--mode update``: a new env value, so the replica is replaced)
or adds a new one-replica Deployment file (``--mode add``).

t0 is taken right before ``git commit`` runs (the file is already written and staged);
t1 is when the Docker API first lists a *new* container running: for ``update`` one whose
``gitops.spec-hash`` label differs from the one running before, for ``add`` the new
workload's container. The API is polled every ~10 ms. Between commits the benchmark waits
until the daemon has pushed a status for the new revision with the replica ready, so one
measurement does not overlap the previous pass.

Beside it, in the same run and interleaved, a bare ``docker run -d`` of the same image and
command is timed the same way (t0 before the CLI starts, t1 when the API lists it running).
Ends with one JSON line: p50_s, p90_s, bare_docker_p50_s, overhead_p50_s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    SERVE,
    TEST_IMAGE,
    DaemonProcess,
    Repo,
    bench_node,
    client,
    cpu_count,
    deployment,
    emit,
    fmt_s,
    git,
    percentile,
    remove_bench_containers,
    report_table,
    status_record,
    stop_daemon,
    wait_until,
)

GOAL_OVERHEAD_S = 1.0
POLL_S = 0.010
# deployment(engine=True) sets terminationGracePeriodSeconds: 2 and SERVE exits on SIGTERM within
# ~0.2 s, so a replacement never waits out a grace period.


class Watch:
    """Polls the engine for running containers of one node."""

    def __init__(self, node: str):
        self.node = node
        self.c = client()

    def running(self, *labels: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.c.api.containers(
            filters={"label": [f"gitops.node={self.node}", *labels], "status": "running"}
        )
        return rows

    def first_new(self, labels: tuple[str, ...], old_hashes: set[str], timeout: float = 60.0) -> float:
        """perf_counter() when a running container with a spec hash outside ``old_hashes`` is first seen."""
        deadline = time.perf_counter() + timeout
        while True:
            rows = self.running(*labels)
            now = time.perf_counter()
            if any(r["Labels"].get("gitops.spec-hash", "") not in old_hashes for r in rows):
                return now
            if now > deadline:
                raise RuntimeError(f"no new running container for {labels} after {timeout:.0f}s")
            time.sleep(POLL_S)

    def close(self) -> None:
        self.c.close()


def settled(repo: Repo, node: str, head: str, expect: int) -> bool:
    """The daemon pushed a status for ``head`` with ``expect`` replicas, all ready."""
    st = status_record(repo.path, node)
    if not st or st.get("revision", {}).get("sha") != head:
        return False
    rows = st.get("workloads") or []
    return len(rows) == expect and all(r.get("state") == "ready" for r in rows)


def bare_run(watch: Watch, node: str, i: int) -> float:
    """Seconds from ``docker run -d`` starting to the API listing the container running."""
    name = f"{node}-bare-{i}"
    args = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"gitops.node={node}",
        "--label",
        "gitops.bench=bare",
        "--label",
        f"gitops.bench-run={i}",
        "--stop-timeout",
        "2",
        "-e",
        f"V={i}",
        TEST_IMAGE,
        *SERVE,
    ]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    t1 = watch.first_new(("gitops.bench=bare", f"gitops.bench-run={i}"), set())
    watch.c.api.remove_container(name, force=True)
    return t1 - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=20, help="commits to time (>= 20 for the goal)")
    ap.add_argument("--bare", type=int, default=None, help="bare docker runs (default: as many as commits)")
    ap.add_argument("--mode", choices=["update", "add"], default="update")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (daemon log)")
    args = ap.parse_args(argv)
    n_bare = args.bare if args.bare is not None else args.commits

    node = bench_node("lat")
    tmp = Path(tempfile.mkdtemp(prefix="gitops-bench-lat-"))
    repo = Repo(tmp / "repo")
    repo.put("apps/w0.yaml", deployment("w0", engine=True, env={"V": "0"}))
    daemon: DaemonProcess | None = None
    watch = Watch(node)
    lat: list[float] = []
    bare: list[float] = []
    print(f"node {node}, {cpu_count()} CPUs, mode {args.mode}, temp dir {tmp}")
    try:
        daemon = DaemonProcess(str(repo.path), node, tmp / "state", tmp / "daemon.log", interval=30).start()
        wait_until(lambda: settled(repo, node, repo.head(), 1), 120, 0.1, "first pass to converge")
        expect = 1
        for i in range(max(args.commits, n_bare)):
            if i < args.commits:
                if args.mode == "update":
                    labels: tuple[str, ...] = ("gitops.name=w0",)
                    old = {r["Labels"]["gitops.spec-hash"] for r in watch.running(*labels)}
                    repo.write("apps/w0.yaml", deployment("w0", engine=True, env={"V": str(i + 1)}))
                else:
                    labels = (f"gitops.name=w{i + 1}",)
                    old = set()
                    repo.write(f"apps/w{i + 1}.yaml", deployment(f"w{i + 1}", engine=True))
                    expect += 1
                git(repo.path, "add", "-A")
                t0 = time.perf_counter()
                git(repo.path, "commit", "-q", "-m", f"bench {i}")
                t1 = watch.first_new(labels, old)
                lat.append(t1 - t0)
                head = repo.head()
                wait_until(partial(settled, repo, node, head, expect), 60, 0.05, f"status for commit {i}")
                if args.mode == "update":
                    # The old replica is gone before the next commit.
                    wait_until(lambda: len(watch.running("gitops.name=w0")) == 1, 30, 0.05, "old replica removed")
            if i < n_bare:
                bare.append(bare_run(watch, node, i))
            print(
                f"  #{i:2d} commit->running {fmt_s(lat[-1]) if i < args.commits else '-':>9}"
                f"   bare docker run {fmt_s(bare[-1]) if i < n_bare else '-':>9}",
                flush=True,
            )
    finally:
        stop_daemon(daemon)
        watch.close()
        removed = remove_bench_containers(node)
        print(f"cleanup: removed {removed} container(s) of {node}")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)

    p50, p90 = percentile(lat, 50), percentile(lat, 90)
    b50 = percentile(bare, 50)
    over = p50 - b50
    report_table(
        f"commit -> container running ({args.mode}, {len(lat)} commits; bare docker run: {len(bare)} runs)",
        [
            ("commit->running p50", "-", fmt_s(p50), None),
            ("commit->running p90", "-", fmt_s(p90), None),
            ("commit->running min/max", "-", f"{min(lat):.3f}/{max(lat):.3f} s", None),
            ("commit->running mean", "-", fmt_s(statistics.fmean(lat)), None),
            ("bare docker run -d p50", "-", fmt_s(b50), None),
            ("bare docker run -d p90", "-", fmt_s(percentile(bare, 90)), None),
            ("overhead p50 (p50 - bare p50)", f"<= {GOAL_OVERHEAD_S:.1f} s", fmt_s(over), over <= GOAL_OVERHEAD_S),
        ],
    )
    emit({"p50_s": p50, "p90_s": p90, "bare_docker_p50_s": b50, "overhead_p50_s": over})
    return 0


if __name__ == "__main__":
    sys.exit(main())
