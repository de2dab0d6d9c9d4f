"""Shared helpers for the daemon benchmarks (latency, pass cost, idle).

Every benchmark works against the real Docker Engine and real Git repositories, under a
unique node name ``bench-<what>-<random>`` so its containers can be found and removed by
label whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402

from gitops.reconcile.reconciler import Reconciler  # noqa: E402
from tests.builders import SERVE, TEST_IMAGE, deployment  # noqa: E402
from tests.helpers import DOCKER_HOST, DaemonProcess, Repo, git, status_of  # noqa: E402
from tests.helpers import make_reconciler as make_test_reconciler  # noqa: E402

__all__ = [
    "DOCKER_HOST",
    "IDLE",
    "ROOT",
    "SERVE",
    "TEST_IMAGE",
    "DaemonProcess",
    "Repo",
    "bench_node",
    "client",
    "cpu_count",
    "cpu_ticks",
    "deployment",
    "emit",
    "fmt_s",
    "git",
    "make_reconciler",
    "percentile",
    "remove_bench_containers",
    "report_table",
    "status_record",
    "stop_daemon",
    "wait_until",
]

T = TypeVar("T")

# Idle until SIGTERM: SERVE's polling loop forks a sleep five times a second, which with
# hundreds of containers is thousands of processes a second and starves the machine.
IDLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]


def bench_node(what: str) -> str:
    """A node name no test or other benchmark uses: ``bench-<what>-<6 hex>``."""
    return f"bench-{what}-{secrets.token_hex(3)}"


def client() -> docker.DockerClient:
    """A Docker client on the engine the daemon uses."""
    return docker.DockerClient(base_url=DOCKER_HOST, timeout=120)


def remove_bench_containers(node: str) -> int:
    """Force-remove every container labelled ``gitops.node=<node>`` (managed or not) and its volumes."""
    c = client()
    try:
        rows = c.api.containers(all=True, filters={"label": [f"gitops.node={node}"]})

        def rm(cid: str) -> int:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                c.api.remove_container(cid, force=True, v=True)
                return 1
            return 0

        with ThreadPoolExecutor(max_workers=4) as pool:
            n = sum(pool.map(rm, [r["Id"] for r in rows]))
        vols = (c.api.volumes(filters={"label": [f"gitops.node={node}"]}) or {}).get("Volumes") or []
        for vol in vols:
            with contextlib.suppress(docker.errors.APIError):
                c.api.remove_volume(vol["Name"], force=True)
    finally:
        c.close()
    return n


def stop_daemon(d: DaemonProcess | None) -> None:
    """SIGTERM the daemon process and wait; SIGKILL when it does not stop in time."""
    if d is None or d.proc is None or d.proc.poll() is not None:
        return
    d.proc.send_signal(signal.SIGTERM)
    try:
        d.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait(timeout=20)


def make_reconciler(repo: Path, node: str, state_dir: Path) -> Reconciler:
    """An in-process node like the integration tests build, at the daemon's default 30 s interval."""
    return make_test_reconciler(str(repo), node, state_dir, interval=30)


def status_record(repo: Path, node: str) -> dict[str, Any] | None:
    """The node's pushed ``status.yaml`` as a dict, or None when not pushed yet."""
    return status_of(repo, node) or None


def wait_until(predicate: Callable[[], T | None], timeout: float, interval: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; RuntimeError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100), as numpy's default."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def fmt_s(x: float) -> str:
    """Seconds with millisecond resolution."""
    return f"{x:.3f} s"


def report_table(title: str, rows: Sequence[tuple[str, str, str, bool | None]]) -> None:
    """Print ``metric | goal | measured | PASS/FAIL`` rows (None: informational)."""
    print(f"\n{title}")
    w0 = max(len("metric"), *(len(r[0]) for r in rows))
    w1 = max(len("goal"), *(len(r[1]) for r in rows))
    w2 = max(len("measured"), *(len(r[2]) for r in rows))
    print(f"  {'metric':<{w0}}  {'goal':<{w1}}  {'measured':>{w2}}  result")
    print(f"  {'-' * w0}  {'-' * w1}  {'-' * w2}  ------")
    for name, goal, got, ok in rows:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  {name:<{w0}}  {goal:<{w1}}  {got:>{w2}}  {verdict}")
    sys.stdout.flush()


def emit(figures: dict[str, float]) -> None:
    """The one machine-readable JSON line every benchmark ends with."""
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}), flush=True)


def cpu_count() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0))


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of ``pid`` in clock ticks."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces: fields are counted after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17.
    own = int(fields[11]) + int(fields[12])
    kids = int(fields[13]) + int(fields[14])
    return own, kids
