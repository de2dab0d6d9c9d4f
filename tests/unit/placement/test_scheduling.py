"""Placement with scheduling rules: node affinity, pod anti-affinity, topology spread, taints and tolerations."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from gitops.identity import ReplicaId
from gitops.model import Workload
from gitops.placement import Assignment, NodeInfo, place
from gitops.scheduling import (
    HOSTNAME_LABEL,
    DomainRule,
    NodeTerm,
    Operator,
    Preference,
    Requirement,
    Scheduling,
    Taint,
    TaintEffect,
    Toleration,
    stamp_taints,
)
from tests.builders import node, workload

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ruled(name: str, replicas: int, rules: Scheduling, **fields: object) -> Workload:
    """A Deployment with scheduling ``rules``."""
    return workload(name, replicas, scheduling=rules, **fields)  # type: ignore[arg-type]


def term(*requirements: Requirement) -> NodeTerm:
    """A nodeSelectorTerm of ``requirements``."""
    return NodeTerm(requirements=requirements)


def label(key: str, operator: Operator, *values: str) -> Requirement:
    """A matchExpressions requirement."""
    return Requirement(key=key, operator=operator, values=values)


def nodes_of(a: Assignment, key: str) -> list[str]:
    """Node of each replica of workload ``key``, by replica index."""
    owners = {r: n for (k, r), n in a.owners().items() if k == key}
    return [owners[r] for r in sorted(owners)]


ANTI_HOST = DomainRule(topology_key=HOSTNAME_LABEL, anti=True)


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        (label("disk", "In", "ssd", "nvme"), {"disk": "nvme"}, True),
        (label("disk", "In", "ssd"), {"disk": "hdd"}, False),
        (label("disk", "In", "ssd"), {}, False),
        (label("disk", "NotIn", "hdd"), {"disk": "ssd"}, True),
        (label("disk", "NotIn", "hdd"), {}, True),
        (label("disk", "NotIn", "hdd"), {"disk": "hdd"}, False),
        (label("gpu", "Exists"), {"gpu": ""}, True),
        (label("gpu", "Exists"), {}, False),
        (label("gpu", "DoesNotExist"), {}, True),
        (label("gpu", "DoesNotExist"), {"gpu": "h100"}, False),
        (label("cores", "Gt", "8"), {"cores": "16"}, True),
        (label("cores", "Gt", "8"), {"cores": "8"}, False),
        (label("cores", "Lt", "8"), {"cores": "-2"}, True),
        (label("cores", "Lt", "8"), {"cores": "many"}, False),
        (label("cores", "Gt", "8"), {}, False),
        (Requirement(key="metadata.name", operator="In", values=("n1",), on_name=True), {}, True),
        (Requirement(key="metadata.name", operator="NotIn", values=("n1",), on_name=True), {}, False),
    ],
)
def test_requirement_operators(requirement: Requirement, labels: dict[str, str], expected: bool) -> None:
    assert requirement.matches("n1", labels) is expected


TAINT = Taint(key="dedicated", value="gpu", effect="NoSchedule")


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        (Toleration(key="dedicated", value="gpu"), True),
        (Toleration(key="dedicated", value="cpu"), False),
        (Toleration(key="dedicated", operator="Exists"), True),
        (Toleration(key="other", operator="Exists"), False),
        (Toleration(operator="Exists"), True),
        (Toleration(key="dedicated", operator="Exists", effect="NoSchedule"), True),
        (Toleration(key="dedicated", operator="Exists", effect="NoExecute"), False),
    ],
)
def test_toleration_matching(toleration: Toleration, expected: bool) -> None:
    assert toleration.matches(TAINT) is expected


# --- node affinity -----------------------------------------------------------------------------------

ZONED = [
    node("a", labels={"zone": "x", "disk": "ssd"}),
    node("b", labels={"zone": "x", "disk": "hdd"}),
    node("c", labels={"zone": "y", "disk": "ssd"}),
    node("d", labels={"zone": "y"}),
]


@pytest.mark.parametrize(
    ("terms", "allowed"),
    [
        # Requirements of a term are ANDed, terms are ORed.
        ((term(label("zone", "In", "x"), label("disk", "In", "ssd")),), {"a"}),
        ((term(label("zone", "In", "x")), term(label("disk", "DoesNotExist"))), {"a", "b", "d"}),
        ((term(label("disk", "NotIn", "ssd")),), {"b", "d"}),
        ((term(Requirement(key="metadata.name", operator="In", values=("c", "d"), on_name=True)),), {"c", "d"}),
    ],
)
def test_required_node_affinity(terms: tuple[NodeTerm, ...], allowed: set[str]) -> None:
    a = place([ruled("w", 8, Scheduling(required=terms))], ZONED)
    assert set(nodes_of(a, "default/Deployment/w")) == allowed
    assert not a.unschedulable


def test_required_node_affinity_matching_nothing_is_unschedulable_with_reason() -> None:
    a = place([ruled("w", 1, Scheduling(required=(term(label("zone", "In", "z")),)))], ZONED)
    assert a.unschedulable == [("default/Deployment/w", 0, "0/4 matching nodes fit (node affinity does not match: 4)")]


def test_preferred_node_affinity_wins_while_the_preferred_nodes_have_room() -> None:
    prefer_c = Scheduling(preferred=(Preference(weight=50, term=term(label("zone", "In", "y"))),))
    # Four replicas of 1 core: the two zone-y nodes (4 cores each) take them all.
    a = place([ruled("w", 4, prefer_c, cpu=1000)], ZONED)
    assert sorted(nodes_of(a, "default/Deployment/w")) == ["c", "c", "d", "d"]
    # Twelve do not fit there: the zone-y nodes fill up, the rest spill over.
    a = place([ruled("w", 12, prefer_c, cpu=1000)], ZONED)
    counts = Counter(nodes_of(a, "default/Deployment/w"))
    assert (counts["c"], counts["d"], counts["a"] + counts["b"]) == (4, 4, 4)


def test_heavier_preference_wins() -> None:
    rules = Scheduling(
        preferred=(
            Preference(weight=10, term=term(label("disk", "In", "ssd"))),
            Preference(weight=80, term=term(label("zone", "In", "y"))),
        )
    )
    a = place([ruled("w", 1, rules)], ZONED)
    assert nodes_of(a, "default/Deployment/w") == ["c"]  # ssd and zone y: 90


# --- pod anti-affinity -----------------------------------------------------------------------------------


def test_required_anti_affinity_one_per_node_and_the_rest_unschedulable_with_reason() -> None:
    nodes = [node("a", cpu=64000), node("b", cpu=64000), node("c", cpu=64000)]
    a = place([ruled("web", 4, Scheduling(domains=(ANTI_HOST,)), cpu=100)], nodes)
    assert sorted(nodes_of(a, "default/Deployment/web")) == ["a", "b", "c"]
    [(key, replica, reason)] = a.unschedulable
    assert ReplicaId(key, replica) not in a.owners()
    assert reason == "0/3 matching nodes fit (anti-affinity: node already holds a replica: 3)"


def test_required_anti_affinity_on_zones() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", anti=True),))
    a = place([ruled("db", 3, rules)], ZONED)
    placed = nodes_of(a, "default/Deployment/db")
    assert sorted(n in ("a", "b") for n in placed) == [False, True]  # one in each zone
    assert [r[2] for r in a.unschedulable] == [
        "0/4 matching nodes fit (anti-affinity: its zone already holds a replica: 4)"
    ]


def test_anti_affinity_drops_replicas_kept_on_one_node_before_it_was_added() -> None:
    nodes = [node("a"), node("b"), node("c")]
    previous = {("default/Deployment/web", 0): "a", ("default/Deployment/web", 1): "a"}
    a = place([ruled("web", 2, Scheduling(domains=(ANTI_HOST,)))], nodes, previous)  # type: ignore[arg-type]
    placed = nodes_of(a, "default/Deployment/web")
    assert len(set(placed)) == 2 and "a" in placed


@pytest.mark.parametrize(
    "rule",
    [
        DomainRule(topology_key="rack", anti=True),
        DomainRule(topology_key="rack", anti=True, required=False, weight=10),
        DomainRule(topology_key="rack", required=False, weight=100),
    ],
)
def test_rules_on_a_label_no_node_has_constrain_nothing(rule: DomainRule) -> None:
    a = place([ruled("w", 6, Scheduling(domains=(rule,)))], ZONED)
    assert len(nodes_of(a, "default/Deployment/w")) == 6 and not a.unschedulable


def test_preferred_anti_affinity_spreads_over_zones() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", anti=True, required=False, weight=100),))
    nodes = [node("a", labels={"zone": "x"}), node("b", labels={"zone": "x"}), node("c", labels={"zone": "y"})]
    for i in range(20):
        a = place([ruled(f"w{i}", 2, rules)], nodes)
        placed = nodes_of(a, f"default/Deployment/w{i}")
        assert "c" in placed, placed


# --- topology spread -----------------------------------------------------------------------------------

SKEWED = [node(f"x{i}", labels={"zone": "x"}) for i in range(4)] + [node("y0", labels={"zone": "y"}), node("bare")]


def zones(a: Assignment, key: str) -> Counter[str]:
    """Replicas of ``key`` per zone label (the node name where there is none)."""
    labels = {n.name: n.labels.get("zone", n.name) for n in SKEWED}
    return Counter(labels[n] for n in nodes_of(a, key))


def test_spread_do_not_schedule_balances_zones_and_skips_unlabelled_nodes() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", max_skew=1),))
    a = place([ruled("w", 6, rules)], SKEWED)
    assert zones(a, "default/Deployment/w") == {"x": 3, "y": 3}
    # Without the rule the five-node zone x takes most.
    assert zones(place([workload("w", 6)], SKEWED), "default/Deployment/w")["x"] >= 4


def test_spread_do_not_schedule_leaves_what_would_skew_unschedulable() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", max_skew=1),))
    full = [*SKEWED[:4], node("y0", cpu=1000, labels={"zone": "y"})]
    a = place([ruled("w", 6, rules, cpu=1000)], full)
    assert zones(a, "default/Deployment/w") == {"x": 2, "y": 1}
    assert {r[2] for r in a.unschedulable} == {
        "0/5 matching nodes fit (insufficient cpu: 1, topology spread: zone skew over 1: 4)"
    }


def test_spread_schedule_anyway_prefers_balance_but_places_everything() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", required=False, weight=100, max_skew=1),))
    full = [*SKEWED[:4], node("y0", cpu=1000, labels={"zone": "y"})]
    a = place([ruled("w", 6, rules, cpu=1000)], full)
    assert zones(a, "default/Deployment/w") == {"x": 5, "y": 1}
    assert not a.unschedulable
    balanced = place([ruled("w", 6, rules)], SKEWED)
    assert zones(balanced, "default/Deployment/w") == {"x": 3, "y": 3}


def test_spread_min_domains_counts_missing_domains_as_empty() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", max_skew=1, min_domains=3),))
    a = place([ruled("w", 4, rules)], SKEWED)
    assert zones(a, "default/Deployment/w") == {"x": 1, "y": 1}
    assert len(a.unschedulable) == 2


def test_spread_releases_kept_replicas_that_break_it() -> None:
    rules = Scheduling(domains=(DomainRule(topology_key="zone", max_skew=1),))
    previous = {("default/Deployment/w", r): f"x{r}" for r in range(4)}
    a = place([ruled("w", 4, rules)], SKEWED, previous)  # type: ignore[arg-type]
    assert zones(a, "default/Deployment/w") == {"x": 2, "y": 2}
    assert place([ruled("w", 4, rules)], SKEWED, a.owners()) == a


# --- taints -----------------------------------------------------------------------------------


def tainted(name: str, effect: TaintEffect, added: datetime | None = None, **fields: object) -> NodeInfo:
    """A node with taint dedicated=gpu of ``effect``."""
    return node(name, **fields).model_copy(  # type: ignore[arg-type]
        update={"taints": (Taint(key="dedicated", value="gpu", effect=effect, time_added=added),)}
    )


def test_no_schedule_keeps_untolerated_work_off_and_running_work_on() -> None:
    nodes = [node("a"), node("b"), tainted("c", "NoSchedule")]
    a = place([workload("w", 6)], nodes)
    assert "c" not in nodes_of(a, "default/Deployment/w")
    tolerant = Scheduling(tolerations=(Toleration(key="dedicated", operator="Exists"),))
    assert "c" in nodes_of(place([ruled("w", 6, tolerant)], nodes), "default/Deployment/w")
    # A replica already there stays: NoSchedule only stops new placements.
    kept = place([workload("w", 6)], nodes, {("default/Deployment/w", 0): "c"})  # type: ignore[dict-item]
    assert nodes_of(kept, "default/Deployment/w")[0] == "c"


def test_no_schedule_reason() -> None:
    a = place([workload("w", 1)], [tainted("c", "NoSchedule")])
    assert a.unschedulable == [
        ("default/Deployment/w", 0, "0/1 matching nodes fit (untolerated taint dedicated=gpu:NoSchedule: 1)")
    ]


@pytest.mark.parametrize(
    ("tolerations", "after", "stays"),
    [
        ((), timedelta(0), False),
        ((Toleration(key="dedicated", operator="Exists", effect="NoExecute"),), timedelta(days=9), True),
        (
            (Toleration(key="dedicated", operator="Exists", effect="NoExecute", seconds=60),),
            timedelta(seconds=59),
            True,
        ),
        (
            (Toleration(key="dedicated", operator="Exists", effect="NoExecute", seconds=60),),
            timedelta(seconds=60),
            False,
        ),
    ],
)
def test_no_execute_moves_running_work_after_its_toleration_seconds(
    tolerations: tuple[Toleration, ...], after: timedelta, stays: bool
) -> None:
    nodes = [node("a"), tainted("c", "NoExecute", added=T0)]
    previous = {("default/Deployment/w", 0): "c"}
    a = place([ruled("w", 1, Scheduling(tolerations=tolerations))], nodes, previous, T0 + after)  # type: ignore[arg-type]
    assert nodes_of(a, "default/Deployment/w") == (["c"] if stays else ["a"])


def test_a_time_limited_no_execute_toleration_places_nothing_new() -> None:
    rules = Scheduling(tolerations=(Toleration(key="dedicated", operator="Exists", effect="NoExecute", seconds=60),))
    a = place([ruled("w", 1, rules)], [tainted("c", "NoExecute", added=T0)], now=T0)
    assert a.unschedulable and not a.per_node


def test_prefer_no_schedule_is_avoided_while_other_nodes_have_room() -> None:
    nodes = [node("a", cpu=2000), tainted("c", "PreferNoSchedule", cpu=8000)]
    a = place([workload("w", 2, cpu=1000)], nodes)
    assert nodes_of(a, "default/Deployment/w") == ["a", "a"]
    a = place([workload("w", 3, cpu=1000)], nodes)
    assert sorted(nodes_of(a, "default/Deployment/w")) == ["a", "a", "c"]


def test_stamp_taints_keeps_earlier_times() -> None:
    taints = (Taint(key="k", effect="NoExecute"), Taint(key="s", effect="NoSchedule"))
    earlier = (Taint(key="k", effect="NoExecute", time_added=T0),)
    later = T0 + timedelta(hours=1)
    assert [t.time_added for t in stamp_taints(taints, earlier, later)] == [T0, None]
    assert [t.time_added for t in stamp_taints(taints, (), later)] == [later, None]


def test_daemon_sets_respect_taints_and_node_affinity() -> None:
    nodes = [node("a"), node("b", labels={"role": "edge"}), tainted("c", "NoSchedule")]
    plain = workload("agent", kind="DaemonSet")
    edge = ruled("edge", 1, Scheduling(required=(term(label("role", "In", "edge")),)), kind="DaemonSet")
    a = place([plain, edge], nodes)
    assert {n for n, items in a.per_node.items() if ("default/DaemonSet/agent", 0) in items} == {"a", "b"}
    assert {n for n, items in a.per_node.items() if ("default/DaemonSet/edge", 0) in items} == {"b"}


# --- node pools -----------------------------------------------------------------------------------


def test_gpu_node_pool_takes_its_work_and_nothing_else() -> None:
    """The docs/placement.md example: a labelled, tainted pool of GPU nodes that GPU work targets."""
    pool = [tainted(f"gpu{i}", "NoSchedule", gpus=4).model_copy(update={"labels": {"pool": "gpu"}}) for i in range(2)]
    nodes = [node("cpu0"), node("cpu1"), *pool]
    train = Scheduling(
        required=(term(label("pool", "In", "gpu")),),
        tolerations=(Toleration(key="dedicated", value="gpu", effect="NoSchedule"),),
    )
    a = place([ruled("train", 4, train, gpus=2), workload("web", 8)], nodes)
    assert sorted(nodes_of(a, "default/Deployment/train")) == ["gpu0", "gpu0", "gpu1", "gpu1"]
    assert set(nodes_of(a, "default/Deployment/web")) == {"cpu0", "cpu1"}


# --- determinism and compatibility ---------------------------------------------------------------


def rich_cluster(seed: int) -> tuple[list[Workload], list[NodeInfo]]:
    """Nodes with zones, pools and taints; workloads using every rule."""
    rng = random.Random(seed)
    effects: list[TaintEffect | None] = [None, None, None, "NoSchedule", "PreferNoSchedule", "NoExecute"]
    nodes = []
    for i in range(40):
        effect = rng.choice(effects)
        taints = (Taint(key="dedicated", value="x", effect=effect, time_added=T0),) if effect else ()
        labels = {"zone": rng.choice("abc"), "cores": str(rng.choice((4, 8, 16)))}
        nodes.append(
            node(f"n{i:02d}", cpu=rng.choice((4000, 8000))).model_copy(update={"labels": labels, "taints": taints})
        )
    choices = [
        Scheduling(),
        Scheduling(domains=(ANTI_HOST,)),
        Scheduling(domains=(DomainRule(topology_key="zone", max_skew=1),)),
        Scheduling(domains=(DomainRule(topology_key="zone", required=False, weight=100, max_skew=1),)),
        Scheduling(required=(term(label("cores", "Gt", "4")),)),
        Scheduling(preferred=(Preference(weight=30, term=term(label("zone", "In", "a"))),)),
        Scheduling(tolerations=(Toleration(operator="Exists"),)),
        Scheduling(domains=(DomainRule(topology_key="zone", anti=True, required=False, weight=10),)),
    ]
    ws = [
        ruled(f"w{i:02d}", rng.randint(1, 12), rng.choice(choices), cpu=rng.choice((100, 500, 1000))) for i in range(30)
    ]
    return ws, nodes


@pytest.mark.parametrize("seed", range(1, 9))
def test_same_result_in_any_input_order_and_a_fixed_point(seed: int) -> None:
    ws, nodes = rich_cluster(seed)
    first = place(ws, nodes, now=T0)
    rng = random.Random(seed)
    rng.shuffle(ws)
    rng.shuffle(nodes)
    assert place(ws, nodes, now=T0) == first
    assert place(ws, nodes, first.owners(), now=T0) == first


def content(a: Assignment) -> str:
    """Short hash of an assignment without the algorithm version (which ``digest`` includes)."""
    raw = json.dumps(
        {
            "per_node": {n: [list(r) for r in v] for n, v in sorted(a.per_node.items())},
            "unschedulable": sorted(list(u) for u in a.unschedulable),
        },
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@pytest.mark.parametrize("hostname_labels", [False, True])
def test_without_rules_placement_is_what_it_was(hostname_labels: bool) -> None:
    """The inputs of test_determinism's SCRIPT; the hashes were computed by hrw-quota-sticky/4 (before rules)."""
    build = random.Random(7)
    nodes = [
        node(
            f"n{i:03d}",
            cpu=build.choice((2000, 4000, 8000)),
            mem=build.choice((4096, 16384)),
            gpus=build.choice((0, 0, 0, 4)),
            labels={"zone": build.choice("abc")},
        )
        for i in range(150)
    ]
    ws = [
        workload(
            f"w{i:03d}",
            replicas=build.randint(0, 12),
            cpu=build.choice((50, 200, 500, 1500)),
            mem=build.choice((64, 256, 1024)),
            gpus=build.choice((0,) * 9 + (1,)),
            kind=build.choice(("Deployment",) * 6 + ("Job", "DaemonSet", "CronJob")),
            selector=build.choice(({},) * 4 + ({"zone": "a"},)),
            host_port=build.choice((None,) * 9 + (80,)),
        )
        for i in range(120)
    ]
    if hostname_labels:
        nodes = [n.model_copy(update={"labels": {**n.labels, HOSTNAME_LABEL: n.name}}) for n in nodes]
    first = place(ws, nodes)
    half = dict(list(first.owners().items())[: len(first.owners()) // 2])
    second = place(ws, [n for n in nodes if n.name != "n007"], half)
    assert (content(first), content(second)) == ("2b7bfc9f38d34900", "7b25df6500a9b76b")


def test_a_tainted_pool_does_not_count_towards_other_work_fair_shares() -> None:
    """Quotas come from each workload's usable nodes: with the pool's capacity counted, balance was 1.41."""
    rng = random.Random(5)
    nodes = [node(f"n{i:03d}", cpu=rng.choice((4000, 8000, 16000)), mem=65536) for i in range(150)]
    taint = (Taint(key="dedicated", effect="NoSchedule"),)
    pool = [node(f"gpu{i}", cpu=64000, mem=65536).model_copy(update={"taints": taint}) for i in range(15)]
    capacity = sum(n.cpu_millis for n in nodes)
    ws: list[Workload] = []
    while sum(w.replicas * w.pod.cpu_request_millis() for w in ws) < 0.65 * capacity:
        ws.append(workload(f"w{len(ws)}", rng.randint(1, 20), cpu=rng.choice((100, 250, 500, 1000, 2000))))
    a = place(ws, nodes + pool)
    assert not a.unschedulable
    requests = {w.key: w.pod.cpu_request_millis() for w in ws}
    util = [sum(requests[k] for k, _ in a.for_node(n.name)) / n.cpu_millis for n in nodes]
    assert max(util) / (sum(util) / len(util)) <= 1.15
