"""Mirror growth benchmark: status pushes through GitSource, with and without compaction.

Every heartbeat commits ``status.yaml`` (a blob, a tree and a commit) into the mirror, and the
status history is cut to a fresh root every ``--history`` commits. This pushes ``--pushes``
heartbeats to a local bare repository twice, once with compaction switched off, and prints
the mirror's size and loose objects after each run.

Run: python bench/git_mirror.py [--pushes N] [--history N]   (about 3.5 min on 2 cores)
Prints a table, then ONE JSON line with the headline figures. Needs git, not Docker.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitops.source import GitSource

NODE = "bench-node"
SAMPLE_EVERY = 50  # pushes between two counts of loose objects, for the peak
# A status record of 20 running replicas, about the size a small node publishes.
ROW = "  - {namespace: default, kind: Deployment, name: web-%d, replica: 0, specHash: %s, state: ready}\n"


def status(i: int) -> bytes:
    """Heartbeat ``i``: only the heartbeat line changes, as between most real heartbeats."""
    rows = "".join(ROW % (r, f"{r:064x}") for r in range(20))
    return f"node: {NODE}\nheartbeat: 2026-01-01T00:00:{i:06d}Z\nworkloads:\n{rows}".encode()


def origin(tmp: Path) -> Path:
    """A bare repository with one commit on main, as the cluster repository."""
    bare = tmp / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    ident = ["-c", "user.name=b", "-c", "user.email=b@b"]
    tree = subprocess.run(
        ["git", "--git-dir", str(bare), "mktree"], input=b"", capture_output=True, check=True
    ).stdout.decode()
    commit = subprocess.run(
        ["git", "--git-dir", str(bare), *ident, "commit-tree", tree.strip(), "-m", "init"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    subprocess.run(["git", "--git-dir", str(bare), "update-ref", "refs/heads/main", commit.strip()], check=True)
    return bare


def disk_bytes(path: Path) -> int:
    """Bytes the directory takes on disk (allocated blocks, as ``du``)."""
    return sum(p.lstat().st_blocks * 512 for p in path.rglob("*"))


def run(pushes: int, history: int, compact: bool) -> dict[str, float]:
    """Push ``pushes`` heartbeats into a fresh mirror; its size, loose objects and time spent."""
    gc_runs, gc_s, peak = 0, 0.0, 0
    with tempfile.TemporaryDirectory(prefix="bench-git-") as name:
        tmp = Path(name)
        src = GitSource(str(origin(tmp)), "main", "", tmp / "state")
        src.fetch()
        compact_once = src.compact

        def timed_compact() -> bool:
            nonlocal gc_runs, gc_s
            if not compact:
                return False
            t = time.perf_counter()
            ran = compact_once()
            if ran:
                gc_runs, gc_s = gc_runs + 1, gc_s + time.perf_counter() - t
            return ran

        src.compact = timed_compact  # type: ignore[method-assign]
        elapsed = 0.0
        for i in range(pushes):
            t = time.perf_counter()
            src.push_status(NODE, status(i), f"{NODE}: heartbeat {i}", history)
            elapsed += time.perf_counter() - t
            if i % SAMPLE_EVERY == SAMPLE_EVERY - 1:
                peak = max(peak, src.loose_objects())
        stats = dict(line.split(": ") for line in src.git("count-objects", "-v").decode().splitlines())
        return {
            "mirror_kib": disk_bytes(src.mirror) / 1024,
            "loose": int(stats["count"]),
            "peak_loose": max(peak, int(stats["count"])),
            "packs": int(stats["packs"]),
            "gc_runs": gc_runs,
            "gc_s": gc_s,
            "push_ms": elapsed / pushes * 1000,
        }


def main() -> None:
    """Both runs, a table and the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushes", type=int, default=2000)
    ap.add_argument("--history", type=int, default=50, help="status_history: commits before the cut")
    args = ap.parse_args()
    with_gc = run(args.pushes, args.history, compact=True)
    without = run(args.pushes, args.history, compact=False)
    print(f"{args.pushes} status pushes, history cut every {args.history} commits")
    columns = ("mirror on disk", 16), ("loose", 7), ("peak loose", 12), ("packs", 7), ("gc runs", 9), ("gc time", 9)
    print(f"  {'':<20}" + "".join(f"{title:>{width}}" for title, width in columns) + f"{'per push':>10}")
    for label, r in (("without compaction", without), ("with compaction", with_gc)):
        print(
            f"  {label:<20}{r['mirror_kib']:>12.0f} KiB{r['loose']:>7.0f}{r['peak_loose']:>12.0f}{r['packs']:>7.0f}"
            f"{r['gc_runs']:>9.0f}{r['gc_s']:>8.2f}s{r['push_ms']:>8.1f}ms"
        )
    print(
        json.dumps(
            {
                "pushes": args.pushes,
                "mirror_kib_without": round(without["mirror_kib"]),
                "mirror_kib_with": round(with_gc["mirror_kib"]),
                "loose_without": without["loose"],
                "loose_with": with_gc["loose"],
                "peak_loose_with": with_gc["peak_loose"],
                "gc_runs": with_gc["gc_runs"],
                "gc_s_total": round(with_gc["gc_s"], 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
