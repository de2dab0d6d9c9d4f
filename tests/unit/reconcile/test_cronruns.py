"""CronRuns: which runs this node takes back, starts, stops and forgets (fixed clock, no engine)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from gitops.admission import Policy
from gitops.cronjobs import run_name, slot_owner
from gitops.identity import WorkloadKey
from gitops.model import CronSpec, JobSpec, ManifestSet, Workload
from gitops.placement import NodeInfo
from gitops.reconcile.cronruns import CronRuns
from gitops.scheduling import NodeTerm, Requirement, Scheduling, Taint
from gitops.status import NodeStatus, ReplicaStatus
from tests.builders import node as node_info
from tests.builders import workload

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ONE: Sequence[NodeInfo] = [node_info("n1")]


def cronjob(
    name: str = "tick",
    namespace: str = "default",
    policy: Literal["Allow", "Forbid", "Replace"] = "Allow",
    successful: int = 3,
    failed: int = 1,
    **kw: object,
) -> Workload:
    """An every-minute CronJob (builders.workload with a CronSpec)."""
    cron = CronSpec(
        schedule="* * * * *", concurrency_policy=policy, successful_history=successful, failed_history=failed
    )
    return workload(name, kind="CronJob", namespace=namespace, cron=cron, **kw)  # type: ignore[arg-type]


def manifests(*ws: Workload) -> ManifestSet:
    return ManifestSet(workloads=ws)


def row(cron: Workload, slot: datetime, state: str = "running", replica: int = 0) -> ReplicaStatus:
    """The status row of one run of ``cron``, as its node reports it."""
    return ReplicaStatus(
        namespace=cron.namespace,
        kind="CronJob",
        name=run_name(cron.name, slot),
        replica=replica,
        spec_hash=cron.spec_hash,
        state=state,
        cronjob=cron.name,
        slot=slot.isoformat(),
    )


def report(*rows: ReplicaStatus, node: str = "n1") -> NodeStatus:
    return NodeStatus(node=node, workloads=list(rows))


def slots(runs: CronRuns) -> set[datetime]:
    return {r.slot for r in runs.runs.values()}


def run_key(cron: Workload, slot: datetime) -> WorkloadKey:
    return WorkloadKey.of(cron.namespace, "CronJob", run_name(cron.name, slot))


# --- recover ---


@pytest.mark.parametrize("order", ["a,b", "b,a"])
@pytest.mark.parametrize("namespace", ["a", "b"])
def test_recover_keys_runs_by_namespace_and_name(order: str, namespace: str) -> None:
    # Regression: recovery looked CronJobs up by name only, so a run of b/tick was taken back as a/tick's
    # (or the other way round, depending on which of the two came last in the revision).
    a = cronjob(namespace="a", version="A")
    b = cronjob(namespace="b", version="B")
    mine = {"a": a, "b": b}[namespace]
    ordered = (a, b) if order == "a,b" else (b, a)
    runs = CronRuns()
    runs.recover(report(row(mine, T0)), manifests(*ordered))
    assert list(runs.runs) == [run_key(mine, T0)]
    run = runs.runs[run_key(mine, T0)]
    assert run.cronjob == WorkloadKey.of(namespace, "CronJob", "tick")
    assert run.workload.namespace == namespace
    assert run.workload.key == f"{namespace}/CronJob/{run_name('tick', T0)}"
    assert run.workload.spec_hash == mine.spec_hash
    assert run.slot == T0


def test_recover_ignores_rows_of_deleted_cronjobs_and_other_rows() -> None:
    tick, gone = cronjob(), cronjob("gone")
    deployment = workload("web")
    rows = [
        row(tick, T0),
        row(gone, T0),  # its CronJob is no longer in the revision
        row(tick, T0 + MINUTE).model_copy(update={"slot": None}),  # no slot: not a run
        ReplicaStatus(namespace="default", kind="Deployment", name="web", replica=0, spec_hash="x", state="ready"),
    ]
    runs = CronRuns()
    runs.recover(report(*rows), manifests(tick, deployment))
    assert list(runs.runs) == [run_key(tick, T0)]
    runs.recover(None, manifests(tick))  # a node without a status yet: nothing to take back
    assert list(runs.runs) == [run_key(tick, T0)]


def test_recovered_runs_keep_the_cronjobs_pod_and_completions() -> None:
    tick = cronjob(job=JobSpec(completions=3))
    runs = CronRuns()
    runs.recover(report(row(tick, T0)), manifests(tick))
    (w,) = runs.workloads()
    assert (w.kind, w.name, w.replicas) == ("CronJob", run_name("tick", T0), 3)
    assert w.pod == tick.pod
    assert w.cron == tick.cron


# --- update: starting slots ---


def test_slots_are_owned_only_among_nodes_whose_policy_admits_the_cronjob() -> None:
    tick = cronjob(namespace="ops")
    # n1 admits only images from a registry the CronJob's image is not in; n3 publishes no policy.
    nodes: Sequence[NodeInfo] = [
        node_info("n1").model_copy(update={"policy": Policy(registries=("registry.example.com/**",))}),
        node_info("n2").model_copy(update={"policy": Policy()}),
        node_info("n3"),
    ]
    due = [T0 + i * MINUTE for i in range(10)]
    started: dict[str, set[datetime]] = {}
    for node in ("n1", "n2", "n3"):
        runs = CronRuns()
        runs.update(manifests(tick), node, nodes, [], T0 - timedelta(seconds=30))
        runs.update(manifests(tick), node, nodes, [], T0 + 9 * MINUTE + timedelta(seconds=1))
        started[node] = slots(runs)
    assert started["n1"] == set() and started["n2"] and started["n3"]
    assert started["n2"] | started["n3"] == set(due) and not started["n2"] & started["n3"]


def test_update_starts_due_slots_this_node_owns_and_no_others() -> None:
    tick = cronjob()
    nodes: Sequence[NodeInfo] = [node_info("n1"), node_info("n2")]
    named = [(n.name, n.labels) for n in nodes]
    due = [T0 + i * MINUTE for i in range(10)]
    started: dict[str, set[datetime]] = {}
    for node in ("n1", "n2"):
        runs = CronRuns()
        runs.update(manifests(tick), node, nodes, [], T0 - timedelta(seconds=30))
        assert runs.runs == {}
        runs.update(manifests(tick), node, nodes, [], T0 + 9 * MINUTE + timedelta(seconds=1))
        started[node] = slots(runs)
        assert started[node] == {s for s in due if slot_owner(tick.key, s, named, {}) == node}
    # Each due slot is started by exactly one of the two nodes, and each node got some.
    assert started["n1"] | started["n2"] == set(due)
    assert not started["n1"] & started["n2"]
    assert started["n1"] and started["n2"]


def test_update_starts_nothing_on_nodes_the_selector_excludes() -> None:
    tick = cronjob(selector={"disk": "ssd"})
    nodes: Sequence[NodeInfo] = [node_info("n1"), node_info("n2", labels={"disk": "ssd"})]
    n1, n2 = CronRuns(), CronRuns()
    for runs, node in ((n1, "n1"), (n2, "n2")):
        runs.update(manifests(tick), node, nodes, [], T0 - timedelta(seconds=30))
        runs.update(manifests(tick), node, nodes, [], T0 + 2 * MINUTE)
    assert n1.runs == {}
    assert slots(n2) == {T0, T0 + MINUTE, T0 + 2 * MINUTE}


@pytest.mark.parametrize(
    "rules",
    [
        Scheduling(required=(NodeTerm(requirements=(Requirement(key="disk", operator="In", values=("ssd",)),)),)),
        Scheduling(),  # n1's NoSchedule taint is not tolerated
    ],
)
def test_update_starts_nothing_on_nodes_affinity_or_taints_exclude(rules: Scheduling) -> None:
    tick = cronjob(scheduling=rules)
    tainted = node_info("n1", labels={"disk": "hdd"}).model_copy(
        update={"taints": (Taint(key="dedicated", effect="NoSchedule"),) if rules == Scheduling() else ()}
    )
    nodes: Sequence[NodeInfo] = [tainted, node_info("n2", labels={"disk": "ssd"})]
    n1, n2 = CronRuns(), CronRuns()
    for runs, node in ((n1, "n1"), (n2, "n2")):
        runs.update(manifests(tick), node, nodes, [], T0 - timedelta(seconds=30))
        runs.update(manifests(tick), node, nodes, [], T0 + 9 * MINUTE)
    assert n1.runs == {}
    assert slots(n2) == {T0 + i * MINUTE for i in range(10)}


def test_first_update_only_looks_back_a_few_seconds() -> None:
    tick = cronjob()
    late, soon = CronRuns(), CronRuns()
    late.update(manifests(tick), "n1", ONE, [], T0 + timedelta(seconds=30))
    soon.update(manifests(tick), "n1", ONE, [], T0 + timedelta(seconds=3))
    assert late.runs == {}
    assert list(soon.runs) == [run_key(tick, T0)]
    run = soon.runs[run_key(tick, T0)]
    assert (run.cronjob, run.slot, run.workload.name) == (tick.key, T0, run_name("tick", T0))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("Allow", {T0, T0 + MINUTE}), ("Forbid", {T0}), ("Replace", {T0 + MINUTE})],
)
def test_concurrency_policy_with_a_run_still_running(
    policy: Literal["Allow", "Forbid", "Replace"], expected: set[datetime]
) -> None:
    tick = cronjob(policy=policy)
    runs = CronRuns()
    runs.update(manifests(tick), "n1", ONE, [], T0 + timedelta(seconds=2))
    assert slots(runs) == {T0}
    # The T0 run is still running (ours, and our report says so) when the next slot comes.
    runs.update(manifests(tick), "n1", ONE, [report(row(tick, T0))], T0 + MINUTE + timedelta(seconds=2))
    assert slots(runs) == expected


def test_forbid_skips_a_slot_while_another_node_runs_one() -> None:
    tick = cronjob(policy="Forbid")
    runs = CronRuns()
    runs.update(manifests(tick), "n1", ONE, [], T0 - timedelta(seconds=30))
    elsewhere = report(row(tick, T0), node="n2")
    runs.update(manifests(tick), "n1", ONE, [elsewhere], T0 + MINUTE + timedelta(seconds=2))
    assert runs.runs == {}


# --- update: history and deletion ---


def test_history_prunes_old_finished_runs() -> None:
    tick = cronjob(successful=1, failed=1)
    runs = CronRuns()
    for i in range(4):
        runs.update(manifests(tick), "n1", ONE, [], T0 + i * MINUTE + timedelta(seconds=1))
    assert slots(runs) == {T0 + i * MINUTE for i in range(4)}
    states = ["succeeded", "succeeded", "failed", "running"]
    own = report(*(row(tick, T0 + i * MINUTE, state) for i, state in enumerate(states)))
    runs.update(manifests(tick), "n1", ONE, [own], T0 + 3 * MINUTE + timedelta(seconds=30))
    # The older success goes; the newest success, the one failure and the running run stay.
    assert slots(runs) == {T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE}


@pytest.mark.parametrize("running_first", [True, False])
def test_a_run_is_finished_only_when_all_its_completions_are(running_first: bool) -> None:
    tick = cronjob(successful=0, job=JobSpec(completions=2))
    runs = CronRuns()
    runs.update(manifests(tick), "n1", ONE, [], T0 + timedelta(seconds=1))
    rows = [row(tick, T0, "running", 0), row(tick, T0, "succeeded", 1)]
    half = report(*(rows if running_first else rows[::-1]))
    runs.update(manifests(tick), "n1", ONE, [half], T0 + timedelta(seconds=20))
    assert slots(runs) == {T0}
    done = report(row(tick, T0, "succeeded", 0), row(tick, T0, "succeeded", 1))
    runs.update(manifests(tick), "n1", ONE, [done], T0 + timedelta(seconds=40))
    assert runs.runs == {}


def test_runs_of_a_deleted_cronjob_are_forgotten() -> None:
    a, b = cronjob(namespace="a"), cronjob(namespace="b")
    runs = CronRuns()
    runs.update(manifests(a, b), "n1", ONE, [], T0 + timedelta(seconds=1))
    assert set(runs.runs) == {run_key(a, T0), run_key(b, T0)}
    # a/tick is deleted; b/tick (same name, other namespace) keeps its run.
    runs.update(manifests(b), "n1", ONE, [], T0 + timedelta(seconds=10))
    assert set(runs.runs) == {run_key(b, T0)}
    runs.update(manifests(), "n1", ONE, [], T0 + timedelta(seconds=20))
    assert runs.runs == {}
    assert runs.workloads() == []


# --- annotate ---


def test_annotate_adds_cronjob_name_and_slot_to_a_runs_row() -> None:
    tick = cronjob(namespace="ops")
    runs = CronRuns()
    runs.update(manifests(tick), "n1", ONE, [], T0 + timedelta(seconds=1))
    bare = row(tick, T0).model_copy(update={"cronjob": None, "slot": None})
    annotated = runs.annotate(bare)
    assert (annotated.cronjob, annotated.slot) == ("tick", T0.isoformat())
    assert annotated.name == bare.name and annotated.state == bare.state
    other = ReplicaStatus(namespace="ops", kind="Deployment", name="web", replica=0, spec_hash="x", state="ready")
    assert runs.annotate(other) is other
    elsewhere = bare.model_copy(update={"namespace": "dev"})  # same run name, other namespace: not ours
    assert runs.annotate(elsewhere).cronjob is None
