"""StatefulSets: parsing (claim templates, ordering, updates, retention) and their cluster-wide gates."""

from __future__ import annotations

from gitops.identity import ReplicaId
from gitops.manifests.load import combine, parse_file
from gitops.model import StatefulSpec, Workload
from gitops.reconcile.plan import PlanInputs, plan
from gitops.rollout import ReplicaView, compute_gates, scale_down_order
from gitops.states import Reason
from tests.builders import observed, workload

STS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
%s  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: nginx
        volumeMounts: [{name: data, mountPath: /data}, {name: cache, mountPath: /cache}]
      volumes: [{name: cache, emptyDir: {}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: fast, resources: {requests: {storage: 2Gi}}}
"""


def _parse(extra: str = "") -> tuple[Workload | None, list[str]]:
    mset = combine({"a.yaml": parse_file("a.yaml", (STS % extra).encode())})
    return (mset.workloads[0] if mset.workloads else None), [str(e) for e in mset.errors]


def test_statefulset_gets_per_replica_claims_and_its_policies() -> None:
    sts, errors = _parse(
        "  podManagementPolicy: Parallel\n  updateStrategy: {rollingUpdate: {partition: 2}}\n"
        "  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}\n"
    )
    assert errors == [] and sts is not None
    assert (sts.kind, sts.replicas, sts.exclusive, sts.pod.claims()) == ("StatefulSet", 3, True, ())
    data, cache = sts.pod.containers[0].mounts
    assert (data.type, data.source, data.per_replica) == ("claim", "data", True)
    assert (cache.type, cache.per_replica) == ("emptyDir", False)
    spec = sts.stateful
    assert spec is not None and (spec.ordered, spec.partition, spec.delete_when_deleted) == (False, 2, True)
    assert [(t.name, t.storage_bytes, t.storage_class) for t in spec.claims] == [("data", 2 * 1024**3, "fast")]


def test_statefulset_refusals_say_what_to_do() -> None:
    _, errors = _parse("  ordinals: {start: 1}\n  updateStrategy: {rollingUpdate: {maxUnavailable: 2}}\n")
    assert any("spec.ordinals.start" in e and "remove ordinals.start" in e for e in errors)
    assert any("maxUnavailable" in e and "one at a time" in e for e in errors)
    assert _parse()[1] == []


def _views(sts: Workload, states: dict[int, tuple[str, bool, bool]]) -> dict[ReplicaId, ReplicaView]:
    return {ReplicaId(sts.key, r): ReplicaView(h, running, ready) for r, (h, running, ready) in states.items()}


def test_ordered_ready_creates_each_ordinal_after_the_one_before_is_ready() -> None:
    sts = workload("web", 3, kind="StatefulSet", stateful=StatefulSpec())
    new = sts.spec_hash
    gates = compute_gates([sts], _views(sts, {}))
    assert sorted(r.replica for r in gates.wait) == [1, 2]
    gates = compute_gates([sts], _views(sts, {0: (new, True, False)}))
    assert sorted(r.replica for r in gates.wait) == [1, 2]
    gates = compute_gates([sts], _views(sts, {0: (new, True, True)}))
    assert sorted(r.replica for r in gates.wait) == [2]
    assert "waiting for web-1 to be ready" in gates.wait[ReplicaId(sts.key, 2)]
    parallel = workload("web", 3, kind="StatefulSet", stateful=StatefulSpec(ordered=False))
    assert compute_gates([parallel], _views(parallel, {})).wait == {}


def test_rolling_update_goes_from_the_highest_ordinal_down_above_the_partition() -> None:
    sts = workload("web", 4, kind="StatefulSet", stateful=StatefulSpec(partition=1))
    new = sts.spec_hash
    all_old = {r: ("old", True, True) for r in range(4)}
    wait = compute_gates([sts], _views(sts, all_old)).wait
    assert sorted(r.replica for r in wait) == [0, 1, 2]  # 3 goes first
    assert "partition 1" in wait[ReplicaId(sts.key, 0)]
    updating = {**all_old, 3: (new, True, False)}
    assert sorted(r.replica for r in compute_gates([sts], _views(sts, updating)).wait) == [0, 1, 2]
    updated = {**all_old, 3: (new, True, True)}
    assert sorted(r.replica for r in compute_gates([sts], _views(sts, updated)).wait) == [0, 1]


def test_on_delete_keeps_every_running_replica_at_its_spec() -> None:
    sts = workload("web", 2, kind="StatefulSet", stateful=StatefulSpec(on_delete=True, ordered=False))
    wait = compute_gates([sts], _views(sts, {0: ("old", True, True), 1: ("old", True, True)})).wait
    assert set(wait) == {ReplicaId(sts.key, 0), ReplicaId(sts.key, 1)} and "OnDelete" in next(iter(wait.values()))


def test_ordered_scale_down_stops_the_highest_surplus_ordinal_first() -> None:
    sts = workload("web", 1, kind="StatefulSet", stateful=StatefulSpec())
    present = [ReplicaId(sts.key, r) for r in range(4)]
    order = scale_down_order([sts], present)
    assert sorted(r.replica for r in order) == [1, 2]
    assert order[ReplicaId(sts.key, 1)] == "OrderedReady scale-down: web-3 stops first"
    assert scale_down_order([sts], present[:2]) == {}
    parallel = workload("web", 1, kind="StatefulSet", stateful=StatefulSpec(ordered=False))
    assert scale_down_order([parallel], present) == {}


def test_plan_keeps_an_ordinal_waiting_its_turn_to_stop() -> None:
    sts = workload("web", 1, kind="StatefulSet", stateful=StatefulSpec())
    kept, going = observed(sts, 1), observed(sts, 2)
    inputs = PlanInputs(ordered_stop=scale_down_order([sts], [kept.rid, going.rid]), workload_keys=frozenset({sts.key}))
    result = plan([], [kept, going], inputs)
    assert [(a.op, a.replica.replica) for a in result.actions] == [("remove", 2)]
    assert result.waiting[kept.rid][0] == Reason.WAITING
