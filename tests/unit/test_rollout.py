"""Cluster-wide rollout and Job gates from the merged replica views: table-style cases."""

from __future__ import annotations

import pytest

from gitops.identity import ReplicaId
from gitops.model import JobSpec
from gitops.rollout import ReplicaView, compute_gates
from gitops.states import State
from tests.builders import workload

OLD = workload("web", 4, version="a").spec_hash


def views(new_hash: str, spec: str) -> dict[ReplicaId, ReplicaView]:
    """One letter per replica: o old running, n new not ready, r new ready, - nothing, f new failed rollout."""
    key = workload("web", 4).key
    out: dict[ReplicaId, ReplicaView] = {}
    for i, ch in enumerate(spec):
        if ch == "o":
            out[ReplicaId(key, i)] = ReplicaView(OLD, running=True, ready=True)
        elif ch == "n":
            out[ReplicaId(key, i)] = ReplicaView(new_hash, running=True, ready=False)
        elif ch == "r":
            out[ReplicaId(key, i)] = ReplicaView(new_hash, running=True, ready=True)
        elif ch == "f":
            out[ReplicaId(key, i)] = ReplicaView(new_hash, running=True, ready=False, failed_spec_hash=new_hash)
    return out


@pytest.mark.parametrize(
    ("surge", "unavailable", "state", "waiting"),
    [
        (1, 0, "oooo", [1, 2, 3]),  # budget 1: only the lowest index moves
        (1, 0, "nooo", [1, 2, 3]),  # one in flight: nothing more
        (1, 0, "rooo", [2, 3]),  # ready: the next one goes
        (2, 1, "oooo", [3]),  # budget 3
        (0, 0, "oooo", [1, 2, 3]),  # a zero budget still moves one at a time
        (1, 0, "rrrr", []),  # done
    ],
)
def test_rolling_update_budget_and_order(surge: int, unavailable: int, state: str, waiting: list[int]) -> None:
    w = workload("web", 4, version="b", max_surge=surge, max_unavailable=unavailable)
    gates = compute_gates([w], views(w.spec_hash, state))
    assert sorted(rid.replica for rid in gates.wait) == waiting
    assert not gates.halted


def test_a_failed_spec_halts_every_old_replica() -> None:
    w = workload("web", 4, version="b")
    gates = compute_gates([w], views(w.spec_hash, "fooo"))
    assert w.key in gates.halted and sorted(rid.replica for rid in gates.wait) == [1, 2, 3]


def test_recreate_leaves_old_replicas_to_stop_on_their_nodes() -> None:
    w = workload("web", 4, version="b", strategy="Recreate")
    assert compute_gates([w], views(w.spec_hash, "oooo")).wait == {}


@pytest.mark.parametrize(
    ("parallelism", "done", "running", "waiting"),
    [
        (1, [], [], [1, 2]),
        (2, [0], [], []),  # finished indices free their slot
        (1, [0], [], [2]),
        (2, [], [0, 1], [2]),
        (3, [0, 1, 2], [], []),
    ],
)
def test_job_parallelism_lowest_indices_first(
    parallelism: int, done: list[int], running: list[int], waiting: list[int]
) -> None:
    job = workload("pi", 3, kind="Job", job=JobSpec(completions=3, parallelism=parallelism))
    vs = {ReplicaId(job.key, i): ReplicaView(job.spec_hash, False, False, State.SUCCEEDED) for i in done}
    vs |= {ReplicaId(job.key, i): ReplicaView(job.spec_hash, True, False) for i in running}
    gates = compute_gates([job], vs)
    assert sorted(rid.replica for rid in gates.wait) == waiting
    assert sorted(rid.replica for rid in gates.finished) == done


def test_a_result_at_another_spec_is_not_final() -> None:
    job = workload("pi", kind="Job", version="b")
    vs = {ReplicaId(job.key, 0): ReplicaView("other", False, False, State.SUCCEEDED)}
    assert compute_gates([job], vs).finished == {}
