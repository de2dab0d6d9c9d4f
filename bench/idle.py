"""Idle footprint of the daemon process: RSS and CPU over a quiet window.

Run: python bench/idle.py [--interval 10] [--window 60]

A real daemon (``python -m gitops.cli run``) serves a local repository made from
``repo-template/`` (the two ``hello`` replicas on ``busybox:1.36``, tagged locally from the
test image when absent: nothing is pulled) at a 10 s interval. Once its first pass has
converged and pushed a status, and a short settle, a window of 60 s is measured:

* RSS: ``VmRSS`` from ``/proc/<pid>/status``, sampled every 0.25 s, the maximum;
* CPU: ``utime + stime + cutime + cstime`` from ``/proc/<pid>/stat`` (the ``c`` fields
  count the git subprocesses it ran and reaped) at the start and end of the window,
  divided by the window: percent of one core.

Ends with one JSON line: idle_rss_mib, idle_cpu_percent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    TEST_IMAGE,
    DaemonProcess,
    Repo,
    bench_node,
    client,
    cpu_count,
    cpu_ticks,
    emit,
    git,
    remove_bench_containers,
    report_table,
    status_record,
    stop_daemon,
    wait_until,
)

GOAL_RSS_MIB = 80.0
GOAL_CPU_PERCENT = 1.0
TEMPLATE_IMAGE = ("busybox", "1.36")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def ensure_template_image() -> None:
    """Tag the local test image as the template's ``busybox:1.36`` unless that exists."""
    c = client()
    try:
        try:
            c.images.get(":".join(TEMPLATE_IMAGE))
        except Exception:
            c.images.get(TEST_IMAGE).tag(*TEMPLATE_IMAGE)
            print(f"tagged {TEST_IMAGE} as {':'.join(TEMPLATE_IMAGE)}")
    finally:
        c.close()


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def status_commits(repo: Repo, node: str) -> int:
    """Commits on the node's status branch (its pushes; history is cut at 50)."""
    out = subprocess.run(
        ["git", "rev-list", "--count", f"refs/heads/gitops/status/{node}"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
    )
    return int(out.stdout.strip() or 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=10.0, help="daemon pass interval in seconds")
    ap.add_argument("--window", type=float, default=60.0, help="measured window in seconds")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the first converged status")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (daemon log)")
    args = ap.parse_args(argv)

    ensure_template_image()
    node = bench_node("idle")
    tmp = Path(tempfile.mkdtemp(prefix="gitops-bench-idle-"))
    repo = Repo(tmp / "repo")
    shutil.copytree(ROOT / "repo-template", repo.path, dirs_exist_ok=True)
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "from repo-template")
    head = repo.head()
    daemon: DaemonProcess | None = None
    print(f"node {node}, {cpu_count()} CPUs, interval {args.interval:g} s, window {args.window:g} s, temp dir {tmp}")
    try:
        daemon = DaemonProcess(str(repo.path), node, tmp / "state", tmp / "daemon.log", interval=args.interval).start()
        assert daemon.proc is not None
        pid = daemon.proc.pid

        def converged() -> bool:
            st = status_record(repo.path, node)
            if not st or st.get("revision", {}).get("sha") != head:
                return False
            rows = st.get("workloads") or []
            return len(rows) == 2 and all(r.get("state") == "ready" for r in rows)

        t_start = time.monotonic()
        wait_until(converged, 120, 0.2, "the template's two replicas ready in the pushed status")
        print(f"first pass converged after {time.monotonic() - t_start:.1f} s (process start included)")
        time.sleep(args.settle)
        rss_start = rss_kib(pid)
        pushes0 = status_commits(repo, node)
        own0, kids0 = cpu_ticks(pid)
        t0 = time.monotonic()
        peak = rss_start
        samples = 0
        while (now := time.monotonic()) - t0 < args.window:
            peak = max(peak, rss_kib(pid))
            samples += 1
            time.sleep(min(0.25, max(0.0, args.window - (now - t0))))
        own1, kids1 = cpu_ticks(pid)
        elapsed = time.monotonic() - t0
        peak = max(peak, rss_kib(pid))
        pushes = status_commits(repo, node) - pushes0
        if not daemon.alive():
            raise RuntimeError("daemon exited during the window:\n" + daemon.output()[-2000:])
    finally:
        stop_daemon(daemon)
        removed = remove_bench_containers(node)
        print(f"cleanup: removed {removed} container(s) of {node}")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)

    own_s = (own1 - own0) / CLK_TCK
    kids_s = (kids1 - kids0) / CLK_TCK
    cpu_pct = (own_s + kids_s) / elapsed * 100.0
    rss_mib = peak / 1024.0
    report_table(
        f"idle daemon, {elapsed:.1f} s window, interval {args.interval:g} s ({samples} RSS samples)",
        [
            ("RSS at window start", "-", f"{rss_start / 1024:.1f} MiB", None),
            ("RSS max over window", f"<= {GOAL_RSS_MIB:.0f} MiB", f"{rss_mib:.1f} MiB", rss_mib <= GOAL_RSS_MIB),
            ("CPU of the daemon itself", "-", f"{own_s:.2f} s", None),
            ("CPU of its git children", "-", f"{kids_s:.2f} s", None),
            ("status pushes in window", "-", str(pushes), None),
            (
                "CPU (self + children) / window",
                f"<= {GOAL_CPU_PERCENT:.0f} %",
                f"{cpu_pct:.2f} %",
                cpu_pct <= GOAL_CPU_PERCENT,
            ),
        ],
    )
    emit({"idle_rss_mib": rss_mib, "idle_cpu_percent": cpu_pct})
    return 0


if __name__ == "__main__":
    sys.exit(main())
