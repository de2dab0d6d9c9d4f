"""The pure pass policy: table-style cases, inputs -> decisions, no engine, no Git, no clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gitops.admission import Policy
from gitops.cluster import ClusterView
from gitops.gpu import Gpu
from gitops.identity import Observed, ReplicaId
from gitops.model import ClusterSpec, ContainerSpec, JobSpec, ManifestSet, PodSpec, SecurityContext, Workload
from gitops.placement import Assignment
from gitops.reconcile import policy
from gitops.reconcile.memory import JobResult, Memory, RestartTrack
from gitops.reconcile.observe import observe
from gitops.reconcile.plan import plan
from gitops.reconcile.policy import SETTLING, Decision, PassContext, decide
from gitops.states import Reason, State
from gitops.status import NodeStatus, ReplicaStatus
from tests.builders import observed, workload

NOW = 1000.0


def row(w: Workload, replica: int, state: str, spec_hash: str | None = None, **kw: Any) -> ReplicaStatus:
    """A peer's status row for one replica of ``w``."""
    return ReplicaStatus(
        namespace=w.namespace,
        kind=w.kind,
        name=w.name,
        replica=replica,
        spec_hash=spec_hash or w.spec_hash,
        state=state,
        **kw,
    )


def run(
    workloads: Sequence[Workload],
    mine: Sequence[tuple[Workload, int]] = (),
    containers: Sequence[Observed] = (),
    peers: dict[str, list[ReplicaStatus]] | None = None,
    others: dict[str, Sequence[tuple[Workload, int]]] | None = None,
    memory: Memory | None = None,
    ages: dict[str, float] | None = None,
    running_since: dict[str, float] | None = None,
    dead: Sequence[str] = (),
    **ctx: Any,
) -> Decision:
    """Decide for node n1, given what it is assigned, what it runs and what peers report."""
    per_node = {"n1": sorted(ReplicaId(w.key, r) for w, r in mine)}
    for name, items in (others or {}).items():
        per_node[name] = sorted(ReplicaId(w.key, r) for w, r in items)
    reports = {n: NodeStatus(node=n, workloads=rows) for n, rows in (peers or {}).items()}
    live = frozenset(reports) - set(dead)
    view = ClusterView(reports=reports, live=live, ages=ages or dict.fromkeys(reports, 1.0))
    obs = observe(list(containers), workloads, running_since or {}, None, NOW)
    mset = ManifestSet(workloads=tuple(workloads), cluster=ClusterSpec(heartbeat_seconds=1, node_timeout_seconds=5))
    return decide(
        PassContext(
            node="n1",
            revision="rev",
            manifests=mset,
            view=view,
            assignment=Assignment(per_node=per_node),
            observation=obs,
            memory=memory or Memory(),
            now=NOW,
            **ctx,
        )
    )


HOSTPATH = PodSpec(
    containers=(
        ContainerSpec(name="main", image="img", mounts=({"target": "/d", "type": "hostPath", "source": "/srv"},)),
    )  # type: ignore[arg-type]
)


# -- fencing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("silent_for", "fenced"),
    [(4.0, set()), (5.0, set()), (5.1, {"default/Deployment/db"})],
)
def test_fencing_stops_only_exclusive_work_after_the_node_timeout(silent_for: float, fenced: set[str]) -> None:
    db, web = workload("db", pod=HOSTPATH), workload("web")
    d = run([db, web], mine=[(db, 0), (web, 0)], silent_for=silent_for)
    assert d.fenced == fenced and d.inputs.fenced == fenced
    assert {i.workload.name for i in d.desired} == ({"web"} if fenced else {"db", "web"})


# -- handoff (make-before-break) --------------------------------------------------------


@pytest.mark.parametrize(
    ("new_owner_reports", "held"),
    [
        (None, True),  # the new owner has not started it yet
        ("running", True),  # started, not ready
        ("ready", False),  # ready at the same spec: let go
    ],
)
def test_a_moving_replica_is_held_until_its_new_owner_reports_it_ready(
    new_owner_reports: str | None, held: bool
) -> None:
    web = workload("web", 2)
    peers = {"n2": [row(web, 1, new_owner_reports)] if new_owner_reports else []}
    d = run(
        [web], mine=[(web, 0)], containers=[observed(web, 0), observed(web, 1)], peers=peers, others={"n2": [(web, 1)]}
    )
    assert (ReplicaId(web.key, 1) in d.inputs.hold) is held


def test_exclusive_replicas_are_never_held() -> None:
    db = workload("db", pod=HOSTPATH)
    d = run([db], containers=[observed(db, 0)], peers={"n2": []}, others={"n2": [(db, 0)]})
    assert d.inputs.hold == frozenset()


# -- break-before-make for exclusive work ---------------------------------------------


@pytest.mark.parametrize(
    ("uptime", "peer_state", "peer_age", "blocked"),
    [
        (1.0, None, 1.0, "learning the cluster's membership"),  # a fresh node waits a node timeout
        (60.0, None, 1.0, None),
        (60.0, "running", 1.0, "waiting for n2 to stop db[0]"),
        (60.0, "exited", 1.0, None),
        # Silent past timeout + 2 heartbeats + margin: it has fenced itself.
        (60.0, "running", 8.9, "waiting for n2 to stop db[0]"),
        (60.0, "running", 9.1, None),
    ],
)
def test_exclusive_replica_starts_only_once_nobody_else_may_run_it(
    uptime: float, peer_state: str | None, peer_age: float, blocked: str | None
) -> None:
    db = workload("db", pod=HOSTPATH)
    peers = {"n2": [row(db, 0, peer_state)] if peer_state else []}
    d = run([db], mine=[(db, 0)], peers=peers, ages={"n2": peer_age}, uptime=uptime)
    got = d.inputs.blocked.get(ReplicaId(db.key, 0))
    assert (got is None) if blocked is None else (got is not None and blocked in got)


def test_recreate_waits_for_every_old_replica_cluster_wide() -> None:
    new = workload("app", 2, version="b", strategy="Recreate")
    old_hash = workload("app", 2, version="a").spec_hash
    d = run([new], mine=[(new, 0)], peers={"n2": [row(new, 1, "ready", old_hash)]}, uptime=60.0)
    assert "waiting for n2 to stop app[1]" in d.inputs.blocked[ReplicaId(new.key, 0)]


# -- rolling updates ---------------------------------------------------------------------


def test_rolling_update_moves_one_replica_at_a_time_in_index_order() -> None:
    old, new = workload("web", 3, version="a"), workload("web", 3, version="b")
    mine = [(new, 0), (new, 1), (new, 2)]
    d = run([new], mine=mine, containers=[observed(old, r) for r in range(3)])
    assert sorted(rid.replica for rid in d.inputs.wait) == [1, 2]
    # Replica 0's new container is up but not ready (no readiness yet): still the only one in flight.
    d = run(
        [new],
        mine=mine,
        containers=[observed(old, 0), observed(new, 0, "created")] + [observed(old, r) for r in (1, 2)],
    )
    assert sorted(rid.replica for rid in d.inputs.wait) == [1, 2]


def test_progress_deadline_halts_the_rollout_and_restores_the_old_container() -> None:
    old, new = workload("web", version="a"), workload("web", version="b", progress_deadline_s=30)
    rid = ReplicaId(new.key, 0)
    cs = [observed(old, 0), observed(new, 0, "exited", exit_code=3, created=1)]
    memory = Memory(in_flight={rid: (new.spec_hash, NOW - 31)})
    d = run([new], mine=[(new, 0)], containers=cs, memory=memory)
    assert "not ready within 30s: exit code 3" in d.inputs.abort[rid]
    assert d.update.rollout_failed[new.key][0] == new.spec_hash
    # Within the deadline: tracked, not aborted; a new spec restarts the clock.
    d = run([new], mine=[(new, 0)], containers=cs, memory=Memory(in_flight={rid: (new.spec_hash, NOW - 29)}))
    assert rid not in d.inputs.abort and d.update.in_flight == {rid: (new.spec_hash, NOW - 29)}
    d = run([new], mine=[(new, 0)], containers=cs, memory=Memory(in_flight={rid: ("other", NOW - 99)}))
    assert rid not in d.inputs.abort and d.update.in_flight == {rid: (new.spec_hash, NOW)}


def test_log_tails_appear_in_reasons_only_when_given() -> None:
    old, new = workload("web", version="a"), workload("web", version="b", progress_deadline_s=1)
    rid = ReplicaId(new.key, 0)
    bad = observed(new, 0, "exited", exit_code=3, created=1)
    memory = Memory(in_flight={rid: (new.spec_hash, NOW - 5)})
    quiet = run([new], mine=[(new, 0)], containers=[observed(old, 0), bad], memory=memory)
    told = run([new], mine=[(new, 0)], containers=[observed(old, 0), bad], memory=memory, logs={bad.id: "boom\n"})
    assert quiet.inputs.abort[rid].endswith("exit code 3")
    assert told.inputs.abort[rid].endswith("exit code 3; log: boom")


def test_a_rollout_halted_elsewhere_stops_every_node() -> None:
    old, new = workload("web", 2, version="a"), workload("web", 2, version="b")
    peers = {"n2": [row(new, 1, "running", failed_spec_hash=new.spec_hash)]}
    d = run([new], mine=[(new, 0)], containers=[observed(old, 0)], peers=peers, others={"n2": [(new, 1)]})
    assert "halted" in d.inputs.wait[ReplicaId(new.key, 0)]


# -- Jobs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "code", "restarts", "result"),
    [
        ("exited", 0, 0, (State.SUCCEEDED, Reason.COMPLETED)),
        ("exited", 3, 1, None),  # retried: below backoffLimit 2
        ("exited", 3, 2, (State.FAILED, Reason.BACKOFF_LIMIT)),
        ("running", None, 5, None),
    ],
)
def test_job_results_come_from_observation(
    state: str, code: int | None, restarts: int, result: tuple[State, Reason] | None
) -> None:
    job = workload("pi", kind="Job", job=JobSpec(backoff_limit=2))
    rid = ReplicaId(job.key, 0)
    memory = Memory(restarts={rid: RestartTrack(total=restarts)})
    d = run([job], mine=[(job, 0)], containers=[observed(job, 0, state, exit_code=code)], memory=memory)
    got = d.update.results.get(rid)
    assert (got.state, got.reason) == result if got else result is None
    assert (rid in d.inputs.finished) is (result is not None)


def test_job_past_its_active_deadline_is_stopped_and_failed() -> None:
    job = workload("pi", kind="Job", job=JobSpec(active_deadline_s=10))
    c = observed(job, 0)
    rid = ReplicaId(job.key, 0)
    d = run([job], mine=[(job, 0)], containers=[c], running_since={c.id: NOW - 11})
    assert d.inputs.stop[rid] == "activeDeadlineSeconds 10 exceeded"
    assert d.update.results[rid].reason == Reason.DEADLINE and rid in d.inputs.finished
    d = run([job], mine=[(job, 0)], containers=[c], running_since={c.id: NOW - 9})
    assert rid not in d.inputs.stop


def test_job_parallelism_and_results_of_other_nodes() -> None:
    job = workload("pi", 4, kind="Job", job=JobSpec(completions=4, parallelism=2))
    peers = {"n2": [row(job, 0, "succeeded"), row(job, 1, "running", container="c1")]}
    d = run([job], mine=[(job, 2), (job, 3)], peers=peers, others={"n2": [(job, 0), (job, 1)]})
    assert d.inputs.finished == {ReplicaId(job.key, 0): "succeeded"}
    # One running elsewhere, parallelism 2: index 2 may start, index 3 waits.
    assert list(d.inputs.wait) == [ReplicaId(job.key, 3)]


def test_job_indices_that_only_wait_elsewhere_take_no_parallelism_slot() -> None:
    # Three nodes, one index each, all reported waiting (settling) with no container: none runs,
    # so none may hold the others back (this deadlocked every node for good).
    job = workload("batch", 3, kind="Job", job=JobSpec(completions=3, parallelism=2))
    waiting = {"reason": "Waiting", "message": "learning the cluster's membership first"}
    peers = {"n2": [row(job, 1, "starting", **waiting)], "n3": [row(job, 2, "starting", **waiting)]}
    d = run([job], mine=[(job, 0)], peers=peers, others={"n2": [(job, 1)], "n3": [(job, 2)]})
    assert ReplicaId(job.key, 0) not in d.inputs.wait


def test_a_result_recorded_for_an_old_spec_does_not_count() -> None:
    job = workload("pi", kind="Job", version="b")
    rid = ReplicaId(job.key, 0)
    memory = Memory(finished={rid: JobResult("old-hash", State.SUCCEEDED, Reason.COMPLETED)})
    d = run([job], mine=[(job, 0)], memory=memory)
    assert rid not in d.inputs.finished
    assert d.update.current_specs is not None and d.update.current_specs[job.key] == job.spec_hash


# -- GPUs, crash loops, pruning -----------------------------------------------------------


def test_gpus_stay_with_the_replicas_holding_them() -> None:
    w = workload("train", 2, gpus=1)
    gpus = [Gpu(uuid=f"GPU-{i}", model="m", memory_mib=1, index=i) for i in range(2)]
    holding = observed(w, 1, gpu_ids=("GPU-1",))
    # Replica 0 left this node; replica 1 keeps GPU-1 rather than moving to the now-free GPU-0.
    d = run([w], mine=[(w, 1)], containers=[holding], gpus=gpus)
    assert [i.gpu_ids for i in d.desired] == [("GPU-1",)]
    d = run([w], mine=[(w, 0), (w, 1)], containers=[holding], gpus=gpus)
    assert {i.replica: i.gpu_ids for i in d.desired} == {0: ("GPU-0",), 1: ("GPU-1",)}


def test_crash_loop_streak_resets_after_running_long_enough() -> None:
    w = workload("web")
    rid = ReplicaId(w.key, 0)
    long_ago = Memory(restarts={rid: RestartTrack(total=3, streak=3, last=NOW - 601)})
    recent = Memory(restarts={rid: RestartTrack(total=3, streak=3, last=NOW - 10)})
    assert run([w], mine=[(w, 0)], containers=[observed(w, 0)], memory=long_ago).update.streaks_reset == {rid}
    assert run([w], mine=[(w, 0)], containers=[observed(w, 0)], memory=recent).update.streaks_reset == frozenset()
    assert rid in run([w], mine=[(w, 0)], memory=recent).inputs.restart_not_before


def test_invalid_revision_forbids_pruning_and_protects_invalid_keys() -> None:
    w = workload("web")
    mset = ManifestSet(
        workloads=(w,), errors=({"file": "x.yaml", "message": "bad"},), invalid_keys=("default/Deployment/old",)
    )  # type: ignore[arg-type]
    obs = observe([], [w], {}, None, NOW)
    d = decide(PassContext("n1", "rev", mset, ClusterView({}, frozenset()), Assignment(), obs, Memory(), now=NOW))
    assert not d.inputs.prune_allowed and d.inputs.protected_keys == {"default/Deployment/old"}


# -- a fresh node, handoff surge ------------------------------------------------------------


@pytest.mark.parametrize(
    ("uptime", "settle_s", "own_rows", "blocked"),
    [
        (1.0, None, [], {0, 1}),  # two heartbeats (1 s each) not yet past: learn the peers first
        (4.0, None, [], {0, 1}),  # past two heartbeats, not past the 5 s floor
        (5.0, None, [], set()),
        (1.0, 0.0, [], set()),  # configured off (a lone node, `run --once`)
        (1.0, None, [1], {0}),  # replica 1 was ours before a restart: repaired at once
        # Our own first record, published while settling, lists every replica placed here as
        # waiting: that is no claim (nodes started together each took their whole share).
        (1.0, None, [-1], {0, 1}),
    ],
)
def test_a_fresh_node_claims_no_new_work_until_it_has_seen_its_peers(
    uptime: float, settle_s: float | None, own_rows: list[int], blocked: set[int]
) -> None:
    w = workload("web", 2)
    settling = {"reason": "Waiting", "message": f"{SETTLING} (5s after start)"}
    own = [row(w, r, "running") for r in own_rows if r >= 0]
    own += [row(w, r, "starting", **settling) for r in (0, 1) if -1 in own_rows]
    peers = {"n1": own}
    d = run([w], mine=[(w, 0), (w, 1)], peers=peers, uptime=uptime, settle_s=settle_s)
    assert {rid.replica for rid, why in d.inputs.blocked.items() if "membership" in why} == blocked


@pytest.mark.parametrize(("uptime", "settling"), [(1.0, {0, 1}), (5.0, set())])
def test_a_restarted_node_takes_no_rollout_step_until_it_has_seen_its_peers(uptime: float, settling: set[int]) -> None:
    # The whole cluster restarted with a new spec: peers' records are stale, so no gate holds
    # its replicas back yet; stepping at once on every node would update every replica together.
    old, new = workload("web", 2, version="a"), workload("web", 2, version="b")
    peers = {"n1": [row(old, r, "ready") for r in range(2)]}
    d = run([new], mine=[(new, 0), (new, 1)], containers=[observed(old, 0), observed(old, 1)], peers=peers,
            uptime=uptime)  # fmt: skip
    assert {rid.replica for rid, why in d.inputs.blocked.items() if "membership" in why} == settling
    if not settling:  # settled: the rollout's own gate lets one replica step
        assert {rid.replica for rid in d.inputs.wait} == {1}


def test_handoffs_never_take_a_deployment_past_replicas_plus_surge() -> None:
    w = workload("web", 4, max_surge=1)
    # n2 runs all four; placement now gives 0 and 1 to us (n1), 2 and 3 stay on n2.
    peers = {"n2": [row(w, r, "ready", container=f"c{r}") for r in range(4)]}
    d = run([w], mine=[(w, 0), (w, 1)], peers=peers, others={"n2": [(w, 2), (w, 3)]})
    assert [rid.replica for rid, why in d.inputs.blocked.items() if "handoff" in why] == [1]
    # Replica 0 has its second copy here now (5 copies = 4 + 1): replica 1 still waits.
    d = run([w], mine=[(w, 0), (w, 1)], containers=[observed(w, 0)], peers=peers, others={"n2": [(w, 2), (w, 3)]})
    assert [rid.replica for rid, why in d.inputs.blocked.items() if "handoff" in why] == [1]
    # n2 let replica 0 go (its copy is gone): replica 1 may move.
    peers = {"n2": [row(w, r, "ready", container=f"c{r}") for r in (1, 2, 3)]}
    d = run([w], mine=[(w, 0), (w, 1)], containers=[observed(w, 0)], peers=peers, others={"n2": [(w, 2), (w, 3)]})
    assert not any("handoff" in why for why in d.inputs.blocked.values())


def test_replicas_with_no_copy_anywhere_start_at_once() -> None:
    w = workload("web", 4, max_surge=1)
    # A dead node's copies do not count: failover is not held back by the surge budget.
    peers = {"n2": [row(w, r, "ready", container=f"c{r}") for r in range(4)]}
    d = run([w], mine=[(w, r) for r in range(4)], peers=peers, dead=["n2"])
    assert not any("handoff" in why for why in d.inputs.blocked.values())
    d = run([w], mine=[(w, r) for r in range(4)], peers=peers)
    assert [rid.replica for rid, why in d.inputs.blocked.items() if "handoff" in why] == [1, 2, 3]


def test_the_policy_imports_no_engine_git_or_clock() -> None:
    code = (
        "import sys, gitops.reconcile.policy as p, gitops.reconcile.report, gitops.reconcile.plan;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'requests', 'subprocess')"
        " or m in ('gitops.source', 'gitops.runtime.docker')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # No clock either: ``now`` comes in through the context.
    tree = ast.parse(Path(policy.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not names & {"time", "datetime", "subprocess", "docker", "gitops.source"}


# -- admission -------------------------------------------------------------------------


def test_a_replica_its_own_policy_denies_is_never_created_and_its_container_goes() -> None:
    priv = workload(
        "p",
        2,
        pod=PodSpec(containers=(ContainerSpec(name="main", image="img", security=SecurityContext(privileged=True)),)),
    )
    plain = workload("plain")
    # Placed here anyway (a peer running an older daemon), and one replica already runs from before.
    running = observed(priv, 1)
    d = run([priv, plain], mine=[(priv, 0), (priv, 1), (plain, 0)], containers=[running], policy=Policy())
    assert [i.id for i in d.desired] == [ReplicaId(plain.key, 0)]
    assert set(d.denied) == {ReplicaId(priv.key, 0), ReplicaId(priv.key, 1)}
    assert "baseline forbids privileged (container main)" in d.denied[ReplicaId(priv.key, 0)]
    actions = plan(d.desired, [running], d.inputs).actions
    [removal] = [a for a in actions if a.replica.key == priv.key]
    assert (removal.op, removal.replica) == ("remove", ReplicaId(priv.key, 1))
    assert removal.cause.startswith("denied by this node's policy")
    assert run([priv], mine=[(priv, 0)], policy=Policy(default="privileged")).denied == {}
