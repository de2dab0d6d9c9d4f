"""Cost of a no-change reconcile pass (Reconciler.run_pass in process, real engine and Git).

Run: python bench/pass_cost.py [--deployments 200] [--files 2000] [--local 20] [--passes 10] [--profile]

Scenario "200 local": 200 one-replica Deployments, all placed on this (only) node and
running. Scenario "2,000 files": 2,000 manifest files in one revision of which 20 are
local: the other 1,980 carry ``nodeSelector: {bench.gitops/pool: elsewhere}``, a label no
node has, so placement makes them Unschedulable; only the 20 without a selector run here.
In a one-node cluster this node is the first live node, so its status also speaks for the
1,980 unschedulable replicas (1,980 extra status rows). A second variant adds a cordoned
peer node (a status branch with a fresh heartbeat, sorted first) which then speaks for
them, so this node's status holds only its 20 rows, as in a large cluster where the other
replicas run on other nodes.

After a first pass (which starts the containers) and a pass that finds nothing to do,
two series of no-change passes are timed:

* heartbeat due (steady state): a daemon runs a pass every 30 s and heartbeats every
  10 s, so every timer pass commits and pushes a status (and the next pass re-reads the
  node's own pushed record). The benchmark makes the heartbeat due before each pass.
  This median is the figure the JSON keys carry.
* no push: passes back to back, keeping those that pushed nothing and followed a pass
  that pushed nothing (what a burst of triggered passes inside one heartbeat costs).

A cold first pass over the 2,000 files (a fresh state directory: clone the mirror, parse
every file, adopt the running containers) and the parse alone are printed too.
Containers idle until SIGTERM without polling (``IDLE``), so ``--deployments 1000`` does not
starve the machine; past 200 local workloads the goal is the 2,000-workload one (1 s).
Ends with one JSON line: pass_<deployments>_local_s, pass_2000_files_s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    IDLE,
    Repo,
    bench_node,
    cpu_count,
    deployment,
    emit,
    fmt_s,
    git,
    make_reconciler,
    remove_bench_containers,
    report_table,
)

from gitops.desired import DesiredLoader
from gitops.reconcile.reconciler import Reconciler
from gitops.status import Capacity, NodeStatus, dump, utc_now_iso

GOAL_200_S = 0.5
GOAL_2000_S = 1.0
# Past 200 local workloads the goal is the 2,000-workload one.
GOAL_LOCAL_MAX = 200
# Looking for passes that push nothing stops after this long: when a pass takes over a
# second, every pass pushes (see docs/benchmarks.md) and none will be found.
QUIET_BUDGET_S = 15.0
ELSEWHERE = "nodeSelector: {bench.gitops/pool: elsewhere}"
# The phases of run_pass timed separately (Reconciler attribute path -> label).
PHASES = {
    "source.fetch": "git fetch",
    "loader.load": "manifests",
    "_cluster_view": "cluster view (status refs)",
    "_observe": "observe (docker list, probes)",
    "_status": "status record",
    "_push": "push decision + push",
    "source.push_status": "  of which git commit+push",
}


@dataclass
class Series:
    """Pass times and per-phase times of one series."""

    times: list[float] = field(default_factory=list)
    pushed: list[bool] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


class PhaseTimer:
    """Wraps Reconciler methods (on the instance only) to time each phase of a pass."""

    def __init__(self, rec: Reconciler):
        self.current: dict[str, float] = {}
        for path in PHASES:
            owner: Any = rec
            *parents, name = path.split(".")
            for p in parents:
                owner = getattr(owner, p, None)
            if owner is not None and callable(getattr(owner, name, None)):
                setattr(owner, name, self._wrap(path, getattr(owner, name)))
            else:
                print(f"  (phase {path} not found in this version of Reconciler: not timed)")

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[label] = self.current.get(label, 0.0) + time.perf_counter() - t

        return timed

    @contextlib.contextmanager
    def pass_(self, series: Series) -> Iterator[None]:
        self.current = {}
        yield
        for k in PHASES:
            series.phases.setdefault(k, []).append(self.current.get(k, 0.0))


def timed_pass(rec: Reconciler, timer: PhaseTimer, series: Series) -> tuple[float, bool, int]:
    with timer.pass_(series):
        t = time.perf_counter()
        report = rec.run_pass()
        took = time.perf_counter() - t
    return took, report.pushed, len(report.plan.actions)


def push_peer(repo: Repo, peer: str) -> None:
    """Publish a status record for a fake, cordoned peer node with a fresh heartbeat."""
    st = NodeStatus(node=peer, heartbeat=utc_now_iso(), capacity=Capacity(cpu=1000, memory=1024), live_nodes=[peer])
    p = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=repo.path, input=dump(st), capture_output=True, check=True
    )
    tree = subprocess.run(
        ["git", "mktree"],
        cwd=repo.path,
        input=f"100644 blob {p.stdout.decode().strip()}\tstatus.yaml\n".encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    commit = git(repo.path, "commit-tree", tree.strip(), "-m", f"{peer}: heartbeat").strip()
    git(repo.path, "update-ref", f"refs/heads/gitops/status/{peer}", commit)


def run_scenario(
    label: str,
    files: dict[str, str],
    tmp: Path,
    passes: int,
    profile: bool,
    peer: bool = False,
    cold: bool = False,
) -> dict[str, Any]:
    node = bench_node("pass")
    repo = Repo(tmp / label / "repo")
    for rel, text in files.items():
        repo.write(rel, text)
    peer_name = ""
    if peer:
        peer_name = "a-" + node + "-peer"  # sorts before this node: it speaks for the unschedulable
        repo.write("cluster.yaml", CLUSTER.format(peer=peer_name))
        push_peer(repo, peer_name)
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", label)
    out: dict[str, Any] = {"label": label, "node": node}
    rec = make_reconciler(repo.path, node, tmp / label / "state")
    timer = PhaseTimer(rec)
    print(f"\n[{label}] node {node}: {len(files)} manifest files", flush=True)
    try:
        warm = Series()
        took, _, actions = timed_pass(rec, timer, warm)
        out["first_s"], out["first_actions"] = took, actions
        print(f"  first pass: {took:.2f} s, {actions} action(s) (starts the containers)", flush=True)
        # Starts run off the pass: converged once a pass plans nothing and nothing is in flight.
        # The engine starts a few containers a second here: allow a second per file, a minute at least.
        deadline = time.monotonic() + max(60.0, float(len(files)))
        while True:
            took, _, actions = timed_pass(rec, timer, warm)
            if actions == 0 and rec.executor.idle():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: still {actions} action(s) after {max(60, len(files))} s")
            time.sleep(0.5)
        running = len(rec.runtime.list_managed(node))
        out["running"] = running
        print(f"  converged: {running} container(s) running, no-change pass {took:.3f} s", flush=True)

        if peer:
            push_peer(repo, peer_name)  # fresh heartbeat: live for the whole series
        steady = Series()
        prof = cProfile.Profile() if profile else None
        for _ in range(passes):
            rec._last_push_at = -1e9  # the heartbeat is due, as at every 30 s timer pass
            if prof:
                prof.enable()
            took, pushed, actions = timed_pass(rec, timer, steady)
            if prof:
                prof.disable()
            assert actions == 0, f"{label}: a no-change pass planned {actions} action(s)"
            steady.times.append(took)
            steady.pushed.append(pushed)
        out["steady"] = steady

        quiet = Series()
        last_pushed = True
        tried = 0
        deadline = time.monotonic() + QUIET_BUDGET_S
        for _ in range(passes * 10):
            if time.monotonic() > deadline:
                break
            scratch = Series()
            tried += 1
            took, pushed, actions = timed_pass(rec, timer, scratch)
            if not pushed and not last_pushed:
                quiet.times.append(took)
                quiet.pushed.append(False)
                for k, v in scratch.phases.items():
                    quiet.phases.setdefault(k, []).append(v[0])
            last_pushed = pushed
            if len(quiet.times) >= passes:
                break
        out["quiet"] = quiet
        out["quiet_tried"] = tried
        if prof:
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
            out["profile"] = buf.getvalue()

        if cold:
            # A fresh state directory: clone, parse every file, adopt the running containers.
            rec2 = make_reconciler(repo.path, node, tmp / label / "state-cold")
            try:
                t = time.perf_counter()
                rep = rec2.run_pass()
                out["cold_s"] = time.perf_counter() - t
                out["cold_actions"] = len(rep.plan.actions)
                loader = DesiredLoader(rec2.source)
                rev = rec2.source.head()
                t = time.perf_counter()
                mset = loader.load(rev)
                out["parse_s"] = time.perf_counter() - t
                out["parse_workloads"] = len(mset.workloads)
            finally:
                rec2.close()
    finally:
        rec.close()
        removed = remove_bench_containers(node)
        print(f"  cleanup: removed {removed} container(s) of {node}", flush=True)
    return out


CLUSTER = """\
apiVersion: gitops/v1
kind: Cluster
metadata: {{name: cluster}}
spec:
  heartbeatSeconds: 10
  nodeTimeoutSeconds: 30
  cordoned: [{peer}]
"""


def print_series(out: dict[str, Any]) -> None:
    steady: Series = out["steady"]
    quiet: Series = out["quiet"]
    print(f"\n  [{out['label']}] median per phase (ms)   heartbeat due   no push")
    for k, name in PHASES.items():
        a = statistics.median(steady.phases.get(k, [0.0])) * 1000
        b = statistics.median(quiet.phases.get(k, [0.0])) * 1000 if quiet.times else float("nan")
        print(f"    {name:<30} {a:10.1f}   {b:8.1f}")
    top = [k for k in PHASES if not PHASES[k].startswith(" ")]
    rest_a = statistics.median(
        t - sum(steady.phases.get(k, [0.0] * len(steady.times))[i] for k in top) for i, t in enumerate(steady.times)
    )
    rest_b = (
        statistics.median(
            t - sum(quiet.phases.get(k, [0.0] * len(quiet.times))[i] for k in top) for i, t in enumerate(quiet.times)
        )
        if quiet.times
        else float("nan")
    )
    print(f"    {'rest (placement, plan, ...)':<30} {rest_a * 1000:10.1f}   {rest_b * 1000:8.1f}")
    print(f"    {'whole pass':<30} {steady.median * 1000:10.1f}   {quiet.median * 1000:8.1f}")
    print(
        f"    passes: {len(steady.times)} with heartbeat due ({sum(steady.pushed)} pushed): "
        f"{' '.join(f'{t:.3f}' for t in steady.times)}"
    )
    print(f"    back-to-back passes tried: {out['quiet_tried']}, of which {len(quiet.times)} pushed nothing")
    if not quiet.times:
        print("    (none: every back-to-back pass pushed; its status differs from the last once the second changes)")
    if "profile" in out:
        print(out["profile"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deployments", type=int, default=200, help="local one-replica Deployments (scenario 1)")
    ap.add_argument("--files", type=int, default=2000, help="manifest files (scenario 2)")
    ap.add_argument("--local", type=int, default=20, help="of which placed on this node (scenario 2)")
    ap.add_argument("--passes", type=int, default=10, help="timed no-change passes per series (>= 10)")
    ap.add_argument("--no-peer", action="store_true", help="skip the cordoned-peer variant of scenario 2")
    ap.add_argument("--profile", action="store_true", help="cProfile the heartbeat-due passes")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="gitops-bench-pass-"))
    print(f"{cpu_count()} CPUs, temp dir {tmp}")
    try:
        s200 = run_scenario(
            f"{args.deployments} local",
            {
                f"apps/d{i:04d}.yaml": deployment(f"d{i:04d}", engine=True, command=IDLE)
                for i in range(args.deployments)
            },
            tmp,
            args.passes,
            args.profile,
        )
        print_series(s200)
        files = {
            f"apps/f{i:04d}.yaml": deployment(
                f"f{i:04d}", engine=True, command=IDLE, pod="" if i < args.local else ELSEWHERE
            )
            for i in range(args.files)
        }
        s2k = run_scenario(f"{args.files} files", files, tmp, args.passes, args.profile, cold=True)
        print_series(s2k)
        peer: dict[str, Any] | None = None
        if not args.no_peer:
            peer = run_scenario(f"{args.files} files, peer", files, tmp, args.passes, args.profile, peer=True)
            print_series(peer)
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)

    st200: Series = s200["steady"]
    st2k: Series = s2k["steady"]
    goal_local = GOAL_200_S if args.deployments <= GOAL_LOCAL_MAX else GOAL_2000_S
    rows: list[tuple[str, str, str, bool | None]] = [
        (f"{args.deployments} local: first pass (starts them)", "-", fmt_s(s200["first_s"]), None),
        (f"{args.deployments} local: no-change pass, heartbeat due", f"<= {goal_local} s", fmt_s(st200.median),
         st200.median <= goal_local),
        (f"{args.deployments} local: no-change pass, no push", "-", fmt_s(s200["quiet"].median), None),
        (f"{args.files} files: cold first pass (fresh state)", "-", fmt_s(s2k["cold_s"]), None),
        (f"{args.files} files: parse alone (DesiredLoader.load)", "-", fmt_s(s2k["parse_s"]), None),
        (f"{args.files} files: no-change pass, heartbeat due", f"<= {GOAL_2000_S} s", fmt_s(st2k.median),
         st2k.median <= GOAL_2000_S),
        (f"{args.files} files: no-change pass, no push", "-", fmt_s(s2k["quiet"].median), None),
    ]  # fmt: skip
    if peer is not None:
        rows += [
            (f"{args.files} files, peer speaks: heartbeat due", "-", fmt_s(peer["steady"].median), None),
            (f"{args.files} files, peer speaks: no push", "-", fmt_s(peer["quiet"].median), None),
        ]
    report_table(
        f"no-change pass cost (median of {args.passes}; {s200['running']} and {s2k['running']} containers running)",
        rows,
    )
    emit({f"pass_{args.deployments}_local_s": st200.median, "pass_2000_files_s": st2k.median})
    return 0


if __name__ == "__main__":
    sys.exit(main())
