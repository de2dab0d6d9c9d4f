"""A node's part in autoscaling: one usage call per pass, usage rows, the decider, takeover, the applied count.

Pure parts on records built here; the pass itself on a real git repository with the engine in memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gitops.cluster import ClusterView
from gitops.config import Config
from gitops.gpu import DeclaredInventory, Gpu
from gitops.manifests.load import combine, parse_file
from gitops.model import ManifestSet
from gitops.placement import rendezvous
from gitops.reconcile.autoscaling import Autoscaling, newest_decisions
from gitops.reconcile.observe import Observation
from gitops.reconcile.reconciler import Reconciler
from gitops.runtime.cgroups import ContainerUsage
from gitops.services import nft
from gitops.status import (
    AutoscalerStatus,
    AutoscalingStatus,
    MetricStatus,
    NodeStatus,
    PortStatus,
    ReplicaStatus,
    ScaleEventStatus,
    UsageStatus,
    content_key,
    utc_now_iso,
)
from gitops.statusview import render_status, status_document
from tests.builders import TEST_IMAGE, autoscaler, deployment, observed, service
from tests.fakes import FakeRuntime
from tests.helpers import Repo, status_of

WEB = deployment("web", image=TEST_IMAGE, container="resources: {requests: {cpu: 100m}}")
HPA = autoscaler(
    spec="metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]"
)
KEY = "default/HorizontalPodAutoscaler/web"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def manifests(web: str = WEB, hpa: str = HPA) -> ManifestSet:
    return combine({"web.yaml": parse_file("web.yaml", web.encode()), "hpa.yaml": parse_file("hpa.yaml", hpa.encode())})


def record(node: str, *, usage: tuple[int, int] | None = None, decision: AutoscalerStatus | None = None) -> NodeStatus:
    rows = []
    if usage is not None:
        rows = [UsageStatus(namespace="default", kind="Deployment", name="web", pods=usage[0], cpu=usage[1], memory=0)]
    scaling = AutoscalingStatus(usage=rows, decisions=[decision] if decision else [])
    return NodeStatus(node=node, heartbeat=utc_now_iso(T0), autoscaling=scaling)


def decision(replicas: int, decider: str, at: datetime = T0) -> AutoscalerStatus:
    return AutoscalerStatus(
        namespace="default",
        name="web",
        target="Deployment/web",
        replicas=replicas,
        decider=decider,
        time=utc_now_iso(at),
    )


def replicas(mset: ManifestSet) -> int:
    (web,) = mset.workloads
    return web.replicas


def test_gits_replicas_are_the_start_and_the_newest_decision_wins_within_min_and_max() -> None:
    scaling = Autoscaling("a", 30)
    assert replicas(scaling.apply(manifests(), {}, T0)) == 1
    reports = {
        "a": record("a", decision=decision(3, "a")),
        "b": record("b", decision=decision(4, "b", T0 + timedelta(seconds=5))),
    }
    assert replicas(scaling.apply(manifests(), reports, T0)) == 4
    assert newest_decisions(reports.values(), T0)[("default", "web")].decider == "b"
    # A later commit lowering maxReplicas clamps the published count at once.
    assert replicas(scaling.apply(manifests(hpa=HPA.replace("maxReplicas: 5", "maxReplicas: 2")), reports, T0)) == 2


def test_an_autoscaler_whose_document_breaks_keeps_the_count_in_force() -> None:
    broken = manifests(hpa=HPA.replace("maxReplicas: 5", "maxReplicas: many"))
    assert broken.invalid_keys == (KEY,)
    reports = {"a": record("a", decision=decision(4, "a"))}
    scaling = Autoscaling("a", 30)
    assert replicas(scaling.apply(broken, reports, T0)) == 4
    assert [d.replicas for d in scaling.decisions(broken, ["a"], reports, [], T0)] == [4]


def test_only_the_decider_decides_from_everyones_usage_and_a_successor_keeps_the_count() -> None:
    mset = manifests()
    live = ["a", "b", "c"]
    decider = rendezvous(KEY, live)
    assert decider is not None
    others = [n for n in live if n != decider]
    # Three replicas at 100 % of their request, on two nodes: the decider asks for 6, limited to max 5.
    # Its own usage is this pass's (its published record says nothing yet); the others' come from their records.
    own = record(decider, usage=(2, 200)).autoscaling
    assert own is not None
    reports = {
        decider: record(decider, decision=decision(3, decider)),
        others[0]: record(others[0], usage=(1, 100)),
        others[1]: record(others[1]),
    }
    nodes = {n: Autoscaling(n, 30) for n in live}
    scaled = {n: nodes[n].apply(mset, reports, T0) for n in live}
    assert {replicas(m) for m in scaled.values()} == {3}
    published = {n: nodes[n].decisions(scaled[n], live, reports, own.usage if n == decider else [], T0) for n in live}
    (mine,) = published[decider]
    assert (mine.decider, mine.current, mine.replicas, mine.reason) == (
        decider,
        3,
        5,
        "cpu above target; TooManyReplicas",
    )
    assert [(m.resource, m.current, m.target) for m in mine.metrics] == [("cpu", 100, 50)]
    assert mine.last_scale is not None and (mine.last_scale.from_, mine.last_scale.to) == (3, 5)
    # Followers republish the decision they apply, unchanged.
    assert published[others[0]] == [decision(3, decider)]
    # The decider dies: its successor starts from the last count, not Git's, and keeps it through a quiet
    # spell shorter than the scale-down window.
    last = mine.model_copy(update={"time": utc_now_iso(T0)})
    survivors = sorted(others)
    successor = rendezvous(KEY, survivors)
    assert successor is not None
    after = {decider: record(decider, decision=last), **{n: record(n, usage=(2, 10)) for n in survivors}}
    taken_over = nodes[successor].apply(mset, after, T0)
    assert replicas(taken_over) == 5
    (taken,) = nodes[successor].decisions(taken_over, survivors, after, [], T0 + timedelta(seconds=60))
    assert (taken.decider, taken.replicas, taken.current) == (successor, 5, 5)
    assert taken.decided_at() > last.decided_at()


def test_a_successor_whose_clock_is_behind_still_publishes_the_newest_decision() -> None:
    mset = manifests()
    ahead = decision(4, "gone", T0 + timedelta(minutes=4))
    node = Autoscaling("a", 30)
    scaled = node.apply(mset, {"gone": record("gone", decision=ahead)}, T0)
    (mine,) = node.decisions(scaled, ["a"], {"a": record("a")}, [], T0)
    assert mine.decided_at() > ahead.decided_at() and mine.replicas == 4
    # A decision dated far ahead (a wild clock, a forged record) is not taken: it would outrank all others.
    wild = decision(5, "gone", T0 + timedelta(hours=1))
    assert replicas(node.apply(mset, {"gone": record("gone", decision=wild)}, T0)) == 1


def test_usage_and_evidence_ride_along_with_heartbeats() -> None:
    quiet = record("a", usage=(1, 10), decision=decision(2, "a"))
    busy = record("a", usage=(1, 90), decision=decision(2, "a").model_copy(update={"reason": "x"}))
    assert content_key(quiet) != content_key(busy)
    busy = record("a", usage=(1, 90), decision=decision(2, "a"))
    assert content_key(quiet) == content_key(busy)
    assert content_key(quiet) != content_key(record("a", usage=(1, 10), decision=decision(3, "a")))


def test_a_pass_samples_every_replica_in_one_call_and_scales_up(repo: Repo, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", WEB)
    repo.put("apps/hpa.yaml", HPA)
    runtime = FakeRuntime(images={TEST_IMAGE})
    cfg = Config(repo=str(repo.path), node="n1", state_dir=tmp_path / "state", settle_seconds=0, autoscale_window_s=5)
    rec = Reconciler(cfg, DeclaredInventory([]), runtime=runtime)
    try:
        rec.run_pass()
        (cid,) = runtime.containers
        start = time.monotonic()
        runtime.usages[cid] = ContainerUsage(cpu_ns=0, memory_bytes=1 << 20)
        rec.run_pass()
        time.sleep(0.2)
        # A whole core since the last sample: 1000 % of the 100m request.
        runtime.usages[cid] = ContainerUsage(cpu_ns=int((time.monotonic() - start) * 1e9), memory_bytes=1 << 20)
        rec.run_pass()  # two samples: decides from this pass's usage
        (published,) = status_of(repo.path, "n1")["autoscaling"]["decisions"]
        assert published["metrics"][0]["current"] > 500
        rec.run_pass()  # applies the decision: 1 + 4 (the default scale-up policy)
        assert len({r.name for r in runtime.requests}) == 5
        assert runtime.ops("usage") and all(n == 1 for n in _usage_calls_per_pass(runtime))
        (scaled,) = status_of(repo.path, "n1")["autoscaling"]["decisions"]
        assert (scaled["replicas"], scaled["decider"], scaled["lastScale"]["from"]) == (5, "n1", 1)
    finally:
        rec.close()


def _usage_calls_per_pass(runtime: FakeRuntime) -> list[int]:
    """How many usage calls each pass made (passes begin with a list_managed call)."""
    counts: list[int] = []
    for op in runtime.ops("list_managed", "usage"):
        if op == "list_managed":
            counts.append(0)
        else:
            counts[-1] += 1
    return [c for c in counts if c]


def test_gitops_status_shows_the_count_in_force_with_its_evidence() -> None:
    decided = decision(3, "b").model_copy(
        update={
            "current": 1,
            "reason": "cpu above target",
            "metrics": [MetricStatus(resource="cpu", utilization=True, current=140, target=50)],
            "last_scale": ScaleEventStatus(time=utc_now_iso(T0), from_=1, to=3, reason="cpu above target"),
        }
    )
    view = ClusterView(reports={"b": record("b", decision=decided)}, live=frozenset({"b"}))
    doc = status_document(manifests(), view, "abc")
    (web,) = doc["workloads"]
    assert web["desired"] == 3
    (hpa,) = doc["autoscalers"]
    assert (hpa["desired"], hpa["current"], hpa["decider"]) == (3, 1, "b")
    text = render_status(doc)
    assert f"{KEY:<40} Deployment/web 1..5  cpu 140%/50%  current 1 desired 3  decider b" in text
    assert "last scaled 1 -> 3 at 2026-12-01T12:00:00Z: cpu above target" in text


def test_usage_counts_ready_replicas_with_two_samples_over_the_window() -> None:
    mset = manifests()
    (web,) = mset.workloads
    ready, unready, fresh = (observed(web, i) for i in range(3))
    runtime = FakeRuntime()
    node = Autoscaling("n1", window_s=10)
    for t, busy_ns in ((0.0, 0), (5.0, 10**9), (20.0, 3 * 10**9)):
        # The fresh replica starts at t=20: one sample so far.
        sampled = (ready, unready, fresh) if t == 20 else (ready, unready)
        runtime.usages = {c.id: ContainerUsage(busy_ns, 1 << 20) for c in sampled}
        node.sample(runtime, DeclaredInventory(), [ready, unready, fresh], mset, t)
    obs = Observation(
        containers=[ready, unready, fresh],
        by_replica={c.rid: [c] for c in (ready, unready, fresh)},
        ready_ids=frozenset({ready.id, fresh.id}),
        unhealthy_ids=frozenset(),
        health={},
        running_since={},
    )
    # The unready replica is left out; the fresh one has no second sample; the window kept t=5 and t=20.
    (row,) = node.usage_rows(mset, obs)
    assert (row.pods, row.cpu, row.memory) == (1, round(2000 / 15), 1 << 20)
    assert runtime.ops("usage") == ["usage"] * 3


GPU_WEB = deployment("web", 2, image=TEST_IMAGE, container="resources: {limits: {nvidia.com/gpu: 2}}")
GPU_60 = "{type: Pods, pods: {metric: {name: gpu_utilization}, target: {type: AverageValue, averageValue: 60}}}"
GPU_HPA = autoscaler(spec=f"metrics: [{GPU_60}]")


class CountingInventory(DeclaredInventory):
    """Declared GPUs whose utilization reads are recorded."""

    def __init__(self, busy: dict[str, int], gpus: Sequence[Gpu] = ()) -> None:
        super().__init__(gpus, busy)
        self.reads: list[list[str]] = []

    def utilization(self, uuids: Sequence[str]) -> dict[str, int]:
        self.reads.append(list(uuids))
        return super().utilization(uuids)


def test_gpu_utilization_is_read_once_per_gpu_per_pass_and_averaged_per_replica() -> None:
    mset = manifests(GPU_WEB, GPU_HPA)
    (web,) = mset.workloads
    two, one = observed(web, 0, gpu_ids=("GPU-a", "GPU-b")), observed(web, 1, gpu_ids=("GPU-c",))
    stopped = observed(web, 2, "exited", gpu_ids=("GPU-d",))
    inventory = CountingInventory({"GPU-a": 100, "GPU-b": 60, "GPU-c": 50, "GPU-d": 100})
    runtime = FakeRuntime()
    node = Autoscaling("n1", window_s=10)
    node.sample(runtime, inventory, [two, one, stopped], mset, 0.0)
    inventory.busy.update({"GPU-a": 80, "GPU-c": 70})
    node.sample(runtime, inventory, [two, one, stopped], mset, 5.0)
    # One read per pass, of the GPUs running replicas hold; the engine is asked once per pass, not per GPU.
    assert inventory.reads == [["GPU-a", "GPU-b", "GPU-c"]] * 2
    assert runtime.ops("usage") == ["usage"] * 2
    containers = [two, one]
    obs = Observation(
        containers=containers,
        by_replica={c.rid: [c] for c in containers},
        ready_ids=frozenset(c.id for c in containers),
        unhealthy_ids=frozenset(),
        health={},
        running_since={},
    )
    # Replica 0: GPU-a 90 % and GPU-b 60 % over the window, 75 %; replica 1: 60 %. No cpu samples.
    (row,) = node.usage_rows(mset, obs)
    assert (row.pods, row.gpu_pods, row.gpu) == (0, 2, 135_000)
    (decided,) = node.decisions(mset, ["n1"], {}, [row], T0)
    # 67.5 % against 60 %: ceil(2 * 1.125) = 3.
    assert (decided.replicas, decided.reason) == (3, "gpu_utilization above target")
    assert [(m.resource, m.current, m.target) for m in decided.metrics] == [("gpu_utilization", 67_500, 60_000)]
    view = ClusterView(reports={"n1": record("n1", decision=decided)}, live=frozenset({"n1"}))
    assert "gpu_utilization 67500m/60  current 2 desired 3" in render_status(status_document(mset, view, "abc"))
    # Without an autoscaler asking for gpu_utilization, NVML is not read at all.
    node.sample(runtime, inventory, [two, one], manifests(), 10.0)
    assert len(inventory.reads) == 2


RPS_10 = "{type: Pods, pods: {metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: 10}}}"


def serving_record(node: str, address: str, replicas: dict[int, int]) -> NodeStatus:
    """A record of ``node`` whose ready replicas of web publish port 8080 at the given host ports."""
    rows = [
        ReplicaStatus(
            namespace="default",
            kind="Deployment",
            name="web",
            replica=r,
            spec_hash="h",
            state="ready",
            ports=[PortStatus(container_port=8080, host_port=port)],
        )
        for r, port in replicas.items()
    ]
    return NodeStatus(node=node, heartbeat=utc_now_iso(T0), address=address, workloads=rows)


def test_connections_are_counted_per_endpoint_and_attributed_to_the_replica_behind_it() -> None:
    mset = manifests(
        WEB.replace("spec:\n", "spec:\n  replicas: 2\n", 1) + "---\n" + service(),
        autoscaler(spec=f"metrics: [{RPS_10}]"),
    )
    reports = {"a": serving_record("a", "10.0.0.1", {0: 31000}), "b": serving_record("b", "10.0.0.2", {1: 31001})}
    one, other = nft.Backend("10.0.0.1", 31000), nft.Backend("10.0.0.2", 31001)
    stranger = nft.Backend("10.0.0.9", 40000)
    readings = iter([{one: 100, other: 50, stranger: 7}, {one: 160, other: 90, stranger: 9}, {one: 20, other: 150}])
    reads: list[int] = []

    def read() -> dict[nft.Backend, int]:
        reads.append(1)
        return next(readings)

    node = Autoscaling("a", window_s=30)
    node.sample_connections(read, mset, reports, 0.0)
    assert node.usage_rows(mset, EMPTY_OBS) == []  # one reading is no rate yet
    node.sample_connections(read, mset, reports, 10.0)
    (row,) = node.usage_rows(mset, EMPTY_OBS)
    # (60 + 40) new connections in 10 s; the endpoint nobody publishes is nobody's.
    assert (row.pods, row.connections) == (0, 10_000)
    # The table was replaced (a new endpoint set): a counter below its last reading starts again from zero.
    node.sample_connections(read, mset, reports, 20.0)
    (row,) = node.usage_rows(mset, EMPTY_OBS)
    assert row.connections == (60 + 20 + 40 + 60) * 1000 // 20
    # The decider adds the other nodes' connections and divides by the serving replicas of its own table.
    b_usage = UsageStatus(
        namespace="default", kind="Deployment", name="web", pods=0, cpu=0, memory=0, connections=41_000
    )
    reports["b"] = reports["b"].model_copy(update={"autoscaling": AutoscalingStatus(usage=[b_usage])})
    (decided,) = node.decisions(mset, ["a", "b"], reports, [row], T0)
    assert [(m.resource, m.current, m.target) for m in decided.metrics] == [("requests_per_second", 25_000, 10_000)]
    assert (decided.replicas, decided.reason) == (5, "requests_per_second above target")
    assert len(reads) == 3
    # Without an autoscaler asking for requests_per_second, nft is not read.
    node.sample_connections(read, manifests(), reports, 30.0)
    assert len(reads) == 3 and node.usage_rows(manifests(), EMPTY_OBS) == []


def test_without_a_measured_rate_the_decider_keeps_the_count() -> None:
    mset = manifests(WEB + "---\n" + service(), autoscaler(spec=f"metrics: [{RPS_10}]"))

    def broken() -> dict[nft.Backend, int]:
        raise nft.NftError("Error: No such file or directory")

    node = Autoscaling("a", window_s=30)
    for t in (0.0, 10.0):
        node.sample_connections(broken, mset, {}, t)
    assert node.usage_rows(mset, EMPTY_OBS) == []
    (decided,) = node.decisions(mset, ["a"], {}, [], T0)
    assert (decided.replicas, decided.reason) == (1, "metrics unavailable")


EMPTY_OBS = Observation(
    containers=[], by_replica={}, ready_ids=frozenset(), unhealthy_ids=frozenset(), health={}, running_since={}
)


def test_a_pass_reads_the_gpus_its_replica_holds_and_publishes_their_utilization(repo: Repo, tmp_path: Path) -> None:
    repo.put(
        "apps/web.yaml", deployment("web", 1, image=TEST_IMAGE, container="resources: {limits: {nvidia.com/gpu: 1}}")
    )
    repo.put("apps/hpa.yaml", GPU_HPA)
    runtime = FakeRuntime(images={TEST_IMAGE})
    gpus = [Gpu(uuid=f"GPU-{i}", model="NVIDIA H100", memory_mib=81559, index=i) for i in range(2)]
    inventory = CountingInventory({"GPU-0": 30, "GPU-1": 90}, gpus)
    cfg = Config(repo=str(repo.path), node="n1", state_dir=tmp_path / "state", settle_seconds=0, autoscale_window_s=5)
    rec = Reconciler(cfg, inventory, runtime=runtime)
    try:
        for _ in range(3):
            rec.run_pass()
        (request,) = {r.name: r for r in runtime.requests}.values()
        assert request.gpu_ids == ("GPU-0",)
        assert inventory.reads and set(map(tuple, inventory.reads)) == {("GPU-0",)}
        (usage,) = status_of(repo.path, "n1")["autoscaling"]["usage"]
        assert (usage["gpuPods"], usage["gpu"]) == (1, 30_000)
    finally:
        rec.close()
