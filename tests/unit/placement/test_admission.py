"""Placement only puts work where the node's published admission policy admits it."""

from __future__ import annotations

from typing import Any

from gitops.admission import Policy
from gitops.model import ContainerSpec, PodSpec, SecurityContext, Workload
from gitops.placement import NodeInfo, place
from tests.builders import node, workload

BASELINE = Policy()
OPEN = Policy(default="privileged")


def privileged(name: str = "p", replicas: int = 2, cpu: int = 0, **fields: Any) -> Workload:
    security = SecurityContext(privileged=True)
    container = ContainerSpec(name="main", image="img", security=security, cpu_request_millis=cpu)
    return workload(name, replicas, pod=PodSpec(containers=(container,)), **fields)


def with_policy(n: NodeInfo, policy: Policy | None) -> NodeInfo:
    return n.model_copy(update={"policy": policy})


def test_replicas_go_only_to_nodes_that_admit_them() -> None:
    nodes = [with_policy(node(name), OPEN if name == "b" else BASELINE) for name in "abcd"]
    a = place([privileged(replicas=3), workload("plain", replicas=8)], nodes)
    owners = a.owners()
    assert {n for (key, _), n in owners.items() if key == "default/Deployment/p"} == {"b"}
    assert len({n for (key, _), n in owners.items() if key == "default/Deployment/plain"}) == 4
    assert a.unschedulable == [] and a.denied == []
    # A fixed point, as without policies: feeding the result back moves nothing.
    assert place([privileged(replicas=3), workload("plain", replicas=8)], nodes, owners).owners() == owners


def test_a_workload_no_node_admits_is_denied_with_the_rules() -> None:
    nodes = [with_policy(node("a"), BASELINE), with_policy(node("b"), Policy(default="restricted"))]
    a = place([privileged(replicas=1)], nodes)
    assert a.per_node == {} and a.unschedulable == []
    [(key, replica, why)] = a.denied
    assert (key, replica) == ("default/Deployment/p", 0)
    assert "a: baseline forbids privileged (container main)" in why
    assert "b: restricted forbids privileged" in why and "restricted requires runAsNonRoot" in why


def test_a_node_without_a_policy_admits_everything() -> None:
    a = place([privileged(replicas=1)], [with_policy(node("a"), BASELINE), node("old")])
    assert a.owners() == {("default/Deployment/p", 0): "old"}


def test_per_namespace_levels_are_honoured() -> None:
    nodes = [with_policy(node("a"), Policy(namespaces={"monitoring": "privileged"})), with_policy(node("b"), BASELINE)]
    a = place([privileged(replicas=2, namespace="monitoring"), privileged("q", replicas=1)], nodes)
    assert set(a.owners().values()) == {"a"}
    assert [(k, r) for k, r, _ in a.denied] == [("default/Deployment/q", 0)]


def test_daemonsets_skip_denying_nodes_and_say_where() -> None:
    nodes = [with_policy(node(name), OPEN if name == "a" else BASELINE) for name in "abc"]
    a = place([privileged("ds", kind="DaemonSet")], nodes)
    assert {n for n, items in a.per_node.items() if items} == {"a"}
    [(key, _, why)] = a.denied
    assert key == "default/DaemonSet/ds" and why.startswith("denied by node policy on b, c: baseline forbids")


def test_capacity_reasons_count_denying_nodes() -> None:
    nodes = [with_policy(node("a", cpu=1000), OPEN), with_policy(node("b"), BASELINE)]
    a = place([privileged(replicas=1, cpu=2000)], nodes)
    assert a.unschedulable == [
        ("default/Deployment/p", 0, "0/2 matching nodes fit (denied by its policy: 1, insufficient cpu: 1)")
    ]
