"""Liveness from status records: fresh heartbeats, expiry, and tolerance of clock skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gitops.cluster import Membership
from gitops.status import NodeStatus, utc_now_iso

T0 = datetime(2026, 11, 27, 18, 0, 0, tzinfo=UTC)


def report(name: str, at: datetime) -> NodeStatus:
    return NodeStatus(node=name, heartbeat=utc_now_iso(at))


def test_fresh_is_live_and_stale_is_not() -> None:
    m = Membership()
    view = m.view(
        {"a": report("a", T0), "b": report("b", T0 - timedelta(seconds=60))},
        {"a": "1", "b": "2"},
        30,
        now=T0,
        monotonic=0.0,
    )
    assert view.live == {"a"}


def test_skewed_clock_cannot_flap_a_node_that_keeps_committing() -> None:
    m = Membership()
    # Node "slow" writes timestamps 40 s behind our clock, but its commits keep changing.
    for i in range(10):
        now = T0 + timedelta(seconds=10 * i)
        view = m.view(
            {"slow": report("slow", now - timedelta(seconds=40))},
            {"slow": f"c{i}"},
            30,
            now=now,
            monotonic=10.0 * i,
        )
        if i:
            assert view.live == {"slow"}, i


def test_node_that_stops_committing_expires_by_our_clock() -> None:
    m = Membership()
    m.view({"a": report("a", T0)}, {"a": "c0"}, 30, now=T0, monotonic=0.0)
    m.view({"a": report("a", T0)}, {"a": "c1"}, 30, now=T0, monotonic=1.0)
    later = T0 + timedelta(seconds=45)
    # Its clock may run ahead (timestamp looks fresh); ours says 44 s without a new commit.
    ahead = report("a", later + timedelta(seconds=0))
    assert m.view({"a": ahead}, {"a": "c1"}, 30, now=later, monotonic=45.0).live == {"a"}
    assert m.view({"a": report("a", T0)}, {"a": "c1"}, 30, now=later, monotonic=45.0).live == frozenset()


def test_a_record_without_heartbeat_is_never_live_even_when_it_changes() -> None:
    # A node that cannot apply any revision yet publishes why without a heartbeat (docs/security.md).
    m = Membership()
    for i in range(3):
        view = m.view({"r": NodeStatus(node="r")}, {"r": f"c{i}"}, 30, now=T0, monotonic=float(i))
        assert view.live == frozenset(), i
