"""observe(): containers grouped per replica, first-seen times, and probe verdicts."""

from __future__ import annotations

from typing import Any, cast

from gitops.health import Health, Prober
from gitops.identity import ReplicaId
from gitops.model import ContainerSpec, PodSpec, Probe, Workload
from gitops.reconcile.observe import observe
from tests.builders import observed, workload
from tests.fakes import FakeProber

READY = Health(ready=True, live=True, started=True)
NOT_READY = Health(ready=False, live=True, started=True, message="readiness failed")
DEAD = Health(ready=False, live=False, started=True, message="liveness failed", consecutive_failures=3)

PROBE = Probe(handler="tcpSocket", port=80)


def probed(name: str = "web", replicas: int = 2, host_network: bool = False, **probes: Any) -> Workload:
    """A workload whose ``main`` container has the given probes, plus an unprobed ``side`` container."""
    main = ContainerSpec(name="main", image="img", **probes)
    side = ContainerSpec(name="side", image="img")
    return workload(name, replicas, pod=PodSpec(containers=(main, side), host_network=host_network))


def as_prober(fake: FakeProber) -> Prober:
    # observe() only calls sync() and result(); the fake has both.
    return cast(Prober, fake)


def test_containers_are_grouped_per_replica() -> None:
    w, other = probed(), workload("db")
    cs = [
        observed(w, 0, container="main"),
        observed(w, 1, "exited", container="main"),
        observed(w, 0, container="side"),
        observed(other, 0),
    ]
    obs = observe(cs, [w, other], {}, None, now=5.0)
    assert obs.containers == cs
    assert obs.by_replica == {
        ReplicaId(w.key, 0): [cs[0], cs[2]],
        ReplicaId(w.key, 1): [cs[1]],
        ReplicaId(other.key, 0): [cs[3]],
    }


def test_running_since_kept_for_running_dropped_for_gone_now_for_new() -> None:
    w = workload(replicas=3)
    still, new, stopped = observed(w, 0), observed(w, 1), observed(w, 2, "exited")
    before = {still.id: 10.0, "id-gone": 3.0, stopped.id: 4.0}
    obs = observe([still, new, stopped], [w], before, None, now=50.0)
    assert obs.running_since == {still.id: 10.0, new.id: 50.0}
    assert before == {still.id: 10.0, "id-gone": 3.0, stopped.id: 4.0}  # the caller's mapping is not changed


def test_without_a_prober_running_containers_are_ready() -> None:
    w = workload(replicas=2)
    up, down = observed(w, 0), observed(w, 1, "exited")
    obs = observe([up, down], [w], {}, None, now=0.0)
    assert obs.ready_ids == {up.id}
    assert obs.unhealthy_ids == frozenset()
    assert obs.health == {}


def test_probe_verdicts_map_to_ready_and_unhealthy() -> None:
    w = probed(replicas=3, readiness=PROBE, liveness=PROBE)
    ok, failing, dead = observed(w, 0), observed(w, 1), observed(w, 2)
    fake = FakeProber({ok.id: READY, failing.id: NOT_READY, dead.id: DEAD})
    obs = observe([ok, failing, dead], [w], {ok.id: 7.0}, as_prober(fake), now=9.0)
    assert obs.ready_ids == {ok.id}
    assert obs.unhealthy_ids == {dead.id}
    assert obs.health == {ok.id: READY, failing.id: NOT_READY, dead.id: DEAD}
    (targets,) = fake.synced
    assert set(targets) == {ok.id, failing.id, dead.id}
    t = targets[ok.id]
    assert (t.readiness, t.liveness, t.startup) == (PROBE, PROBE, None)
    assert t.started_at == 7.0  # first seen running, not now
    assert targets[failing.id].started_at == 9.0
    assert t.host is None


def test_host_network_pods_are_probed_on_localhost() -> None:
    w = probed(host_network=True, startup=PROBE)
    c = observed(w, 0)
    fake = FakeProber({c.id: READY})
    observe([c], [w], {}, as_prober(fake), now=0.0)
    assert fake.synced[0][c.id].host == "127.0.0.1"
    assert fake.synced[0][c.id].startup == PROBE


def test_containers_without_probes_are_ready_when_running_and_not_probed() -> None:
    w = probed(readiness=PROBE)
    main, side, side_down = observed(w, 0), observed(w, 0, container="side"), observed(w, 1, "exited", container="side")
    fake = FakeProber({main.id: NOT_READY})
    obs = observe([main, side, side_down], [w], {}, as_prober(fake), now=0.0)
    assert set(fake.synced[0]) == {main.id}
    assert fake.asked == [main.id]
    assert obs.ready_ids == {side.id}
    assert obs.unhealthy_ids == frozenset()


def test_only_running_containers_are_probed() -> None:
    w = probed(readiness=PROBE)
    c = observed(w, 0, "exited")
    fake = FakeProber({c.id: READY})
    obs = observe([c], [w], {}, as_prober(fake), now=0.0)
    # sync() is still called (with nothing), so the prober forgets containers that stopped.
    assert fake.synced == [{}]
    assert obs.ready_ids == frozenset()


def test_a_container_of_an_unknown_spec_hash_is_not_probed() -> None:
    w = probed(readiness=PROBE, liveness=PROBE)
    current, stale = observed(w, 0), observed(w, 1, spec_hash="f" * 64)
    gone = observed(workload("deleted"), 0)  # its workload is not in the revision at all
    fake = FakeProber({current.id: NOT_READY, stale.id: DEAD, gone.id: DEAD})
    obs = observe([current, stale, gone], [w], {}, as_prober(fake), now=0.0)
    assert set(fake.synced[0]) == {current.id}
    assert stale.id not in fake.asked and gone.id not in fake.asked
    assert stale.id not in obs.unhealthy_ids and gone.id not in obs.unhealthy_ids
    # Unprobed, they count as running containers without probes do.
    assert obs.ready_ids == {stale.id, gone.id}
