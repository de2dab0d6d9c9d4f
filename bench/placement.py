"""Placement benchmark: 10,000 replicas on 1,000 nodes; balance, disruption and speed.

Run: python bench/placement.py [--seed N] [--plots DIR] [--policies] [--rules]
(--rules: the same cluster with scheduling rules, see ``with_rules``)
Prints a table, then ONE JSON line with the headline figures (see docs/placement.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitops.admission import Policy
from gitops.identity import ReplicaId
from gitops.model import PodSpec, Workload
from gitops.placement import Assignment, NodeInfo, place
from gitops.scheduling import (
    HOSTNAME_LABEL,
    DomainRule,
    NodeTerm,
    Preference,
    Requirement,
    Scheduling,
    Taint,
    Toleration,
)
from tests.builders import node, workload

NODES = 1000
REPLICAS = 10_000
TARGET_UTIL = 0.65
# (cores, GiB, GPUs, share of nodes)
NODE_CLASSES = ((4, 16, 0, 0.30), (8, 32, 0, 0.35), (16, 64, 0, 0.25), (32, 128, 0, 0.08), (64, 512, 8, 0.02))
GIB = 1024**3


def make_node(name: str, rng: random.Random, gpu_ok: bool = True) -> NodeInfo:
    """One node drawn from NODE_CLASSES, with zone and disk labels."""
    classes = [c for c in NODE_CLASSES if gpu_ok or not c[2]]
    cores, gib, gpus, _ = rng.choices(classes, weights=[c[3] for c in classes])[0]
    labels = {"zone": rng.choice("abc"), "disk": "ssd" if rng.random() < 0.3 else "hdd"}
    if gpus:
        labels["accelerator"] = "h100"
    return node(name, cpu=cores * 1000, mem=gib * 1024, gpus=gpus, labels=labels)


def make_cluster(seed: int) -> tuple[list[Workload], list[NodeInfo]]:
    """The benchmark input: NODES nodes, REPLICAS Deployment replicas at about TARGET_UTIL cpu."""
    rng = random.Random(seed)
    nodes = [make_node(f"node-{i:04d}", rng) for i in range(NODES)]
    total_cpu = sum(n.cpu_millis for n in nodes)
    gpu_total = sum(len(n.gpus) for n in nodes)
    workloads: list[Workload] = [
        workload("node-exporter", 1, cpu=50, mem=64, kind="DaemonSet"),
        workload("log-shipper", 1, cpu=100, mem=128, kind="DaemonSet", selector={"disk": "ssd"}),
    ]
    ds_cpu = sum(w.pod.cpu_request_millis() for w in workloads) * NODES
    # GPU training/inference jobs fill about 60 % of the GPUs.
    gpu_used = 0
    specs: list[tuple[int, int, int, int, dict[str, str], tuple[int, ...]]] = []
    while gpu_used < 0.6 * gpu_total:
        g = rng.choice((1, 1, 2, 4, 8))
        r = rng.randint(1, 4)
        specs.append((r, 4000 * g, 32768 * g, g, {"accelerator": "h100"}, ()))
        gpu_used += g * r
    left = REPLICAS - sum(s[0] for s in specs)
    raw: list[tuple[int, float, float, dict[str, str], tuple[int, ...]]] = []
    port = 9000
    while left > 0:
        r = min(left, max(1, int(rng.paretovariate(1.2) * 3)), 60)
        left -= r
        size = rng.choice((0.1, 0.25, 0.25, 0.5, 0.5, 1, 1, 2, 4))
        mem_per_core = rng.uniform(1.5, 5.0)
        roll = rng.random()
        selector = {"zone": rng.choice("abc")} if roll < 0.1 else {"disk": "ssd"} if roll < 0.18 else {}
        ports: tuple[int, ...] = ()
        if rng.random() < 0.03:
            ports, port = (port,), port + 1
        raw.append((r, size, mem_per_core, selector, ports))
    # Scale the generic requests so deployments plus DaemonSets use TARGET_UTIL of all cpu.
    want = TARGET_UTIL * total_cpu - ds_cpu - sum(s[0] * s[1] for s in specs)
    unit = want / sum(r * size for r, size, _, _, _ in raw)
    for r, size, mpc, sel, ports in raw:
        cpu = max(10, int(size * unit))
        specs.append((r, cpu, int(cpu * mpc * 1024 / 1000), 0, sel, ports))
    for i, (r, cpu, mem, g, sel, ports) in enumerate(specs):
        workloads.append(
            workload(f"app-{i:04d}", r, cpu=cpu, mem=mem, gpus=g, selector=sel, host_port=ports[0] if ports else None)
        )
    return workloads, nodes


def with_rules(workloads: list[Workload], nodes: list[NodeInfo], seed: int) -> tuple[list[Workload], list[NodeInfo]]:
    """The cluster as a node pool: GPU nodes tainted, GPU work tolerating and targeting them by node affinity
    (instead of nodeSelector); a fifth of the rest with a rule each.

    Rules, in equal parts: required one-per-node anti-affinity, DoNotSchedule spread over zones
    (maxSkew 1), preferred node affinity for ssd nodes (weight 50), preferred anti-affinity on zones.
    """
    rng = random.Random(seed + 2000)
    taint = Taint(key="dedicated", value="gpu", effect="NoSchedule")
    tolerate = Toleration(key="dedicated", value="gpu", effect="NoSchedule")
    gpu_nodes = NodeTerm(requirements=(Requirement(key="accelerator", operator="In", values=("h100",)),))
    pooled = [n.model_copy(update={"taints": (taint,)}) if n.gpus else n for n in nodes]
    rules = (
        Scheduling(domains=(DomainRule(topology_key=HOSTNAME_LABEL, anti=True),)),
        Scheduling(domains=(DomainRule(topology_key="zone", max_skew=1),)),
        Scheduling(
            preferred=(
                Preference(
                    weight=50, term=NodeTerm(requirements=(Requirement(key="disk", operator="In", values=("ssd",)),))
                ),
            )
        ),
        Scheduling(domains=(DomainRule(topology_key="zone", anti=True, required=False, weight=50),)),
    )
    out = []
    for w in workloads:
        if w.pod.gpu_count():
            pool = Scheduling(required=(gpu_nodes,), tolerations=(tolerate,))
            w = w.model_copy(update={"node_selector": {}, "scheduling": pool})
        elif w.kind == "Deployment" and rng.random() < 0.2:
            w = w.model_copy(update={"scheduling": rng.choice(rules)})
        out.append(w)
    return out, pooled


def owners(a: Assignment, daemons: set[str]) -> dict[ReplicaId, str]:
    """(replica -> node) for non-DaemonSet replicas: what nodes would report as ``previous``."""
    return a.owners(frozenset(daemons))


def moved(before: Mapping[ReplicaId, str], after: Mapping[ReplicaId, str]) -> int:
    """Replicas present before and after whose node changed."""
    return sum(1 for rid, n in before.items() if rid in after and after[rid] != n)


def utilisation(a: Assignment, workloads: Sequence[Workload], nodes: Sequence[NodeInfo]) -> dict[str, list[float]]:
    """Per-node cpu, memory and dominant (max of the two) utilisation."""
    by_key = {w.key: w for w in workloads}
    out: dict[str, list[float]] = {"cpu": [], "memory": [], "dominant": []}
    for n in nodes:
        cpu = sum(by_key[k].pod.cpu_request_millis() for k, _ in a.for_node(n.name)) / n.cpu_millis
        mem = sum(by_key[k].pod.memory_request_mib() for k, _ in a.for_node(n.name)) / n.memory_mib
        out["cpu"].append(cpu)
        out["memory"].append(mem)
        out["dominant"].append(max(cpu, mem))
    return out


def reference_place(workloads: Sequence[Workload], nodes: Sequence[NodeInfo], limit: int) -> float:
    """Straightforward pure-Python weighted HRW + first-fit (blake2b per pair); seconds for ``limit`` replicas."""
    start = time.perf_counter()
    free = {n.name: [n.cpu_millis, n.memory_mib, len(n.gpus)] for n in nodes}
    done = 0
    for w in sorted(workloads, key=lambda w: w.key):
        if w.kind == "DaemonSet":
            continue
        need = (w.pod.cpu_request_millis(), w.pod.memory_request_mib(), w.pod.gpu_count())
        match = [n for n in nodes if all(n.labels.get(k) == v for k, v in w.node_selector.items())]
        for r in range(w.replicas):
            if done >= limit:
                return time.perf_counter() - start
            ranked = []
            for n in match:
                h = int.from_bytes(hashlib.blake2b(f"{w.key}/{r}/{n.name}".encode(), digest_size=8).digest(), "big")
                u = (h + 0.5) / 2.0**64
                ranked.append((-n.cpu_millis / math.log(u), n.name))
            ranked.sort(key=lambda t: (-t[0], t[1]))
            for _, name in ranked:
                f = free[name]
                if f[0] >= need[0] and f[1] >= need[1] and f[2] >= need[2]:
                    f[0] -= need[0]
                    f[1] -= need[1]
                    f[2] -= need[2]
                    break
            done += 1
    return time.perf_counter() - start


def main() -> None:
    """Run every scenario, print the table and the JSON line, save the plots."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plots", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    ap.add_argument("--reference-replicas", type=int, default=1000, help="subset timed for the reference")
    ap.add_argument("--policies", action="store_true", help="nodes publish admission policies (three distinct ones)")
    ap.add_argument("--rules", action="store_true", help="add taints and scheduling rules (with_rules)")
    args = ap.parse_args()
    rng = random.Random(args.seed + 1000)
    workloads, nodes = make_cluster(args.seed)
    if args.rules:
        workloads, nodes = with_rules(workloads, nodes, args.seed)
    if args.policies:
        # Every workload is admitted everywhere, so the figures stay comparable: this prices the checks.
        kinds = (Policy(), Policy(default="privileged"), Policy(host_paths=("/var/log",)))
        nodes = [n.model_copy(update={"policy": kinds[i % 3]}) for i, n in enumerate(nodes)]
    daemons = {w.key for w in workloads if w.kind == "DaemonSet"}
    total = sum(w.replicas for w in workloads if w.kind != "DaemonSet")
    rows: list[tuple[str, str]] = []

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        base = place(workloads, nodes)
        times.append(time.perf_counter() - t0)
    compute_s = min(times)
    prev = owners(base, daemons)
    t0 = time.perf_counter()
    again = place(workloads, nodes, prev)
    sticky_s = time.perf_counter() - t0
    noop_moved = moved(prev, owners(again, daemons))

    ref_part = reference_place(workloads, nodes, args.reference_replicas)
    reference_s = ref_part * total / args.reference_replicas

    util = utilisation(base, workloads, nodes)
    mean_dom = sum(util["dominant"]) / len(nodes)
    util_max_mean = max(util["dominant"]) / mean_dom

    def node_replicas(name: str) -> int:
        return sum(1 for n in prev.values() if n == name)

    fail_events: list[tuple[str, int, int]] = []
    for name in rng.sample([n.name for n in nodes], 20):
        after = owners(place(workloads, [n for n in nodes if n.name != name], prev), daemons)
        fail_events.append((f"fail {name}", moved(prev, after), node_replicas(name)))
    fail_one_ratio = sum(m for _, m, _ in fail_events) / max(1, sum(f for _, _, f in fail_events))

    pct_events: list[tuple[str, int, int]] = []
    for trial in range(3):
        gone = set(rng.sample([n.name for n in nodes], NODES // 100))
        after = owners(place(workloads, [n for n in nodes if n.name not in gone], prev), daemons)
        pct_events.append((f"fail 1% #{trial}", moved(prev, after), sum(node_replicas(g) for g in gone)))
    fail_1pct_ratio = sum(m for _, m, _ in pct_events) / max(1, sum(f for _, _, f in pct_events))

    # Joining nodes come from the same size mix, so "moved x (n+1) / total" is normalised by
    # the newcomer's cpu against the mean node: exactly that ratio for a mean-sized node.
    join_events: list[tuple[str, int, int]] = []
    join_ideal: list[float] = []
    capacity = sum(n.cpu_millis for n in nodes)
    for i in range(20):
        new = make_node(f"node-new-{i}", rng)
        if args.rules:
            _, (new,) = with_rules([], [new], args.seed)
        after = owners(place(workloads, [*nodes, new], prev), daemons)
        join_ideal.append(total * new.cpu_millis / (capacity + new.cpu_millis))
        join_events.append((f"join {new.cpu_millis // 1000}c", moved(prev, after), round(join_ideal[-1])))
    join_one_ratio = sum(m for _, m, _ in join_events) / sum(join_ideal)
    join_raw = sum(m for _, m, _ in join_events) / len(join_events) / total * (len(nodes) + 1)

    touched = list(workloads)
    i = next(j for j, w in enumerate(touched) if w.kind == "Deployment" and w.replicas > 3)
    w = touched[i]
    c = w.pod.containers[0].model_copy(update={"image": "registry.example/app:2"})
    touched[i] = w.model_copy(update={"pod": PodSpec(containers=(c,))})
    image_moved = moved(prev, owners(place(touched, nodes, prev), daemons))

    extra = workload("new-app", 20, cpu=500, mem=1024)
    after = owners(place([*workloads, extra], nodes, prev), daemons)
    add_moved = moved(prev, after)
    add_fraction = add_moved / total

    scale_moved = 0
    for delta in (1, -1):
        scaled = list(workloads)
        scaled[i] = w.model_copy(update={"replicas": w.replicas + delta})
        scale_moved = max(scale_moved, moved(prev, owners(place(scaled, nodes, prev), daemons)))

    rows += [
        ("replicas (deployments/jobs)", str(total)),
        ("nodes", str(len(nodes))),
        ("unschedulable", str(len(base.unschedulable))),
        (
            "mean cpu / memory / dominant util",
            f"{sum(util['cpu']) / NODES:.3f} / {sum(util['memory']) / NODES:.3f} / {mean_dom:.3f}",
        ),
        ("max/mean dominant util", f"{util_max_mean:.3f}"),
        ("max/mean cpu util", f"{max(util['cpu']) / (sum(util['cpu']) / NODES):.3f}"),
        ("place() from scratch (s)", f"{compute_s:.3f}"),
        ("place() with previous, no change (s)", f"{sticky_s:.3f}"),
        (f"reference pure-Python HRW (s, extrapolated from {args.reference_replicas})", f"{reference_s:.1f}"),
        ("speed-up", f"{reference_s / compute_s:.0f}x"),
        ("no-op moved", str(noop_moved)),
        ("image-only change moved", str(image_moved)),
        ("fail one: moved/forced (20 events)", f"{fail_one_ratio:.3f}"),
        ("fail 1%: moved/forced (3 events)", f"{fail_1pct_ratio:.3f}"),
        ("join one: moved / newcomer's cpu share (20 joins)", f"{join_one_ratio:.3f}"),
        ("join one: moved x (n+1) / total, not size-normalised", f"{join_raw:.3f}"),
        ("add 20-replica workload: others moved", str(add_moved)),
        ("scale one by +-1: moved", str(scale_moved)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    _plots(args.plots, util, fail_events + pct_events + join_events)
    print(
        json.dumps(
            {
                "compute_s": round(compute_s, 4),
                "reference_s": round(reference_s, 2),
                "util_max_mean": round(util_max_mean, 4),
                "fail_one_ratio": round(fail_one_ratio, 4),
                "fail_1pct_ratio": round(fail_1pct_ratio, 4),
                "join_one_ratio": round(join_one_ratio, 4),
                "noop_moved": noop_moved,
                "add_workload_extra_fraction": round(add_fraction, 6),
                "scale_one_moved": scale_moved,
            }
        )
    )


def _plots(where: Path, util: dict[str, list[float]], events: list[tuple[str, int, int]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4))
    for key in ("dominant", "cpu", "memory"):
        ax.plot(sorted(util[key], reverse=True), label=key)
    mean = sum(util["dominant"]) / len(util["dominant"])
    ax.axhline(mean * 1.15, color="grey", linestyle="--", label="1.15 x mean (dominant)")
    ax.set_xlabel("nodes, sorted by utilisation")
    ax.set_ylabel("requested / allocatable")
    ax.set_title("Per-node utilisation, 10,000 replicas on 1,000 nodes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(where / "placement-utilisation.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4))
    xs = range(len(events))
    ax.bar([x - 0.2 for x in xs], [m for _, m, _ in events], width=0.4, label="moved")
    ax.bar([x + 0.2 for x in xs], [f for _, _, f in events], width=0.4, label="forced (failures) / fair share (joins)")
    ax.set_xticks(list(xs), [e for e, _, _ in events], rotation=70, fontsize=7)
    ax.set_ylabel("replicas")
    ax.set_title("Replicas moved per event (with stickiness)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(where / "placement-moves.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
