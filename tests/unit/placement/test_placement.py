"""Example-based tests of placement rules."""

from __future__ import annotations

import pytest

from gitops.placement import ALGORITHM_VERSION, Assignment, place
from tests.builders import node, workload


def test_cronjobs_are_not_placed_and_jobs_are() -> None:
    a = place([workload("c", kind="CronJob"), workload("j", replicas=3, kind="Job")], [node("a"), node("b"), node("c")])
    placed = a.owners()
    assert set(placed) == {("default/Job/j", i) for i in range(3)}
    assert len(set(placed.values())) == 3  # spread over distinct nodes


def test_selector_and_cordon() -> None:
    nodes = [node("a", labels={"disk": "ssd"}), node("b", labels={"disk": "ssd"}, cordoned=True), node("c")]
    a = place([workload("w", replicas=4, selector={"disk": "ssd"})], nodes)
    assert set(a.owners().values()) == {"a"}


def test_no_matching_node_is_unschedulable_with_reason() -> None:
    a = place([workload("w", replicas=2, selector={"zone": "x"})], [node("a")])
    assert a.per_node == {}
    assert [(k, r) for k, r, _ in a.unschedulable] == [("default/Deployment/w", 0), ("default/Deployment/w", 1)]
    assert "nodeSelector zone=x" in a.unschedulable[0][2]


def test_capacity_reason_names_the_resource() -> None:
    a = place([workload("big", replicas=1, cpu=5000)], [node("a", cpu=4000), node("b", cpu=2000)])
    assert a.unschedulable == [("default/Deployment/big", 0, "0/2 matching nodes fit (insufficient cpu: 2)")]


def test_host_port_conflict() -> None:
    a = place([workload("p", replicas=3, host_port=80)], [node("a"), node("b")])
    assert sorted(a.owners().values()) == ["a", "b"]
    assert len(a.unschedulable) == 1
    assert "host port 80/tcp in use" in a.unschedulable[0][2]


def test_gpu_capacity() -> None:
    a = place([workload("g", replicas=3, gpus=2)], [node("a", gpus=4), node("b", gpus=1), node("c")])
    assert sorted(a.owners().values()) == ["a", "a"]
    assert "insufficient nvidia.com/gpu" in a.unschedulable[0][2]


def test_daemonset_on_every_matching_node_even_cordoned() -> None:
    nodes = [node("a"), node("b", cordoned=True), node("c", labels={"role": "edge"}), node("d", cpu=50)]
    a = place([workload("ds", kind="DaemonSet", selector={}, cpu=100)], nodes)
    key = "default/DaemonSet/ds"
    assert {n for n, items in a.per_node.items() if (key, 0) in items} == {"a", "b", "c"}
    assert a.unschedulable == [(key, 0, "node d: insufficient cpu")]


def test_daemonset_takes_room_before_deployments() -> None:
    nodes = [node("a", cpu=1000)]
    a = place([workload("w", replicas=2, cpu=400), workload("ds", kind="DaemonSet", cpu=300)], nodes)
    assert ("default/DaemonSet/ds", 0) in a.for_node("a")
    assert len(a.unschedulable) == 1


def test_spread_prefers_distinct_nodes_then_doubles_up() -> None:
    a = place([workload("w", replicas=5)], [node("a"), node("b"), node("c")])
    counts = sorted(list(a.owners().values()).count(n) for n in "abc")
    assert counts == [1, 2, 2]


def test_scale_down_drops_highest_indices() -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    before = place([workload("w", replicas=4)], nodes).owners()
    after = place([workload("w", replicas=2)], nodes, before).owners()
    assert after == {r: n for r, n in before.items() if r[1] < 2}


@pytest.mark.parametrize("keep", [1, 2])
def test_scale_down_moves_no_survivor_to_a_node_it_left_empty(keep: int) -> None:
    # Each survivor already sits alone on its node: whichever nodes rank it first, a pull by the
    # emptied node (its quota is below one replica) would only restart it elsewhere.
    w = "default/Deployment/w"
    for nodes in ([node("a"), node("b")], [node("a"), node("b"), node("c")]):
        for first in ("a", "b", "c")[: len(nodes)]:
            others = [n.name for n in nodes if n.name != first]
            before = {(w, 0): first, **{(w, r): n for r, n in enumerate(others, 1)}}
            after = place([workload("w", replicas=keep, cpu=100)], nodes, before).owners()
            assert after == {r: n for r, n in before.items() if r[1] < keep}


def test_replica_leaves_node_that_no_longer_fits_or_matches() -> None:
    nodes = [node("a", labels={"z": "1"}), node("b", labels={"z": "1"}), node("c", labels={"z": "2"})]
    prev = {("default/Deployment/w", 0): "c", ("default/Deployment/w", 1): "gone"}
    a = place([workload("w", replicas=2, selector={"z": "1"})], nodes, prev).owners()
    assert set(a.values()) <= {"a", "b"} and len(a) == 2
    small = [node("a", cpu=100), node("b")]
    a2 = place([workload("v", cpu=500)], small, {("default/Deployment/v", 0): "a"}).owners()
    assert a2 == {("default/Deployment/v", 0): "b"}


def test_previous_is_kept_where_valid() -> None:
    nodes = [node(f"n{i}") for i in range(5)]
    prev = {("default/Deployment/w", i): f"n{4 - i}" for i in range(3)}
    assert place([workload("w", replicas=3)], nodes, prev).owners() == prev


def test_previous_piled_on_one_node_spreads_evenly() -> None:
    # After a cold start every node may have claimed every replica; equal nodes end even.
    nodes = [node(n) for n in "abc"]
    prev = {("default/Deployment/w", i): "a" for i in range(6)}
    after = place([workload("w", replicas=6, cpu=0)], nodes, prev).owners()
    assert sorted(list(after.values()).count(n) for n in "abc") == [2, 2, 2]
    assert sum(1 for r, n in after.items() if n == "a") == 2


def test_joining_node_pulls_its_share_and_nothing_else_moves() -> None:
    nodes = [node(f"n{i:02d}") for i in range(10)]
    ws = [workload(f"w{i}", replicas=10, cpu=50) for i in range(10)]
    before = place(ws, nodes).owners()
    after = place(ws, [*nodes, node("n99")], before).owners()
    moved = {r for r in before if after[r] != before[r]}
    assert moved and all(after[r] == "n99" for r in moved)
    assert len(moved) <= 2 * 100 // 11


def test_node_failure_moves_only_its_replicas() -> None:
    nodes = [node(f"n{i:02d}") for i in range(10)]
    ws = [workload(f"w{i}", replicas=8, cpu=100) for i in range(10)]
    before = place(ws, nodes).owners()
    after = place(ws, nodes[1:], before).owners()
    assert {r for r in before if after[r] != before[r]} == {r for r, n in before.items() if n == "n00"}


def test_duplicates_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate node"):
        place([], [node("a"), node("a")])
    with pytest.raises(ValueError, match="duplicate workload"):
        place([workload("w"), workload("w")], [node("a")])


def test_digest_and_version() -> None:
    a = place([workload("w", replicas=2)], [node("a"), node("b")])
    assert ALGORITHM_VERSION.startswith("hrw")
    assert a.digest("rev", ["b", "a"]) == a.digest("rev", ["a", "b"])
    assert a.digest("rev", ["a"]) != a.digest("rev2", ["a"])
    assert Assignment.model_validate(a.model_dump()).digest("r", []) == a.digest("r", [])


def test_empty_inputs() -> None:
    assert place([], []) == Assignment()
    a = place([workload("w")], [])
    assert a.unschedulable == [("default/Deployment/w", 0, "no schedulable node")]
