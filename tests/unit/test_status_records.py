"""Peers' status records are untrusted: each is validated alone, a bad one is contained (issue 8).

Pure tests of ``parse_record``, ``Membership`` and ``StatusBoard``, a test per reader of
records (cron runs, placement, ``gitops status``, the pass policy), then whole passes of an
in-process node against real repositories holding hostile records (these need the engine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from pydantic import ValidationError

from gitops.cli import main
from gitops.cluster import ClusterView, Membership, StatusBoard, claims_expire_after
from gitops.identity import ReplicaId, WorkloadKey
from gitops.model import ClusterSpec, ManifestSet
from gitops.placement import Assignment, place
from gitops.reconcile.cronruns import CronRuns, _cluster_runs
from gitops.reconcile.memory import Memory
from gitops.reconcile.observe import observe
from gitops.reconcile.policy import PassContext, decide
from gitops.reconcile.reconciler import Reconciler
from gitops.states import Reason
from gitops.status import (
    MAX_CAPACITY,
    MAX_GPUS,
    MAX_TEXT,
    STATUS_MAX_BYTES,
    BadRecord,
    NodeStatus,
    dump,
    parse_record,
    utc_now_iso,
)
from gitops.statusview import render_status, status_document
from tests.builders import deployment, workload
from tests.builders import node as node_info
from tests.helpers import DOCKER_HOST, Repo, git, make_reconciler, managed, wait_for

T0 = datetime(2026, 11, 27, 18, 0, 0, tzinfo=UTC)
ROW: dict[str, Any] = {
    "namespace": "default",
    "kind": "Deployment",
    "name": "db",
    "replica": 0,
    "specHash": "h" * 64,
    "state": "running",
}
CRON_ROW: dict[str, Any] = {**ROW, "kind": "CronJob", "name": "tick-1795716000", "cronjob": "tick"}


def record(node: str = "peer", heartbeat: str | None = None, **fields: Any) -> dict[str, Any]:
    """A status record as data: fresh heartbeat at T0 unless given."""
    return {"node": node, "heartbeat": heartbeat if heartbeat is not None else utc_now_iso(T0), **fields}


def raw(data: Mapping[str, Any]) -> bytes:
    """``data`` as status.yaml bytes."""
    return yaml.safe_dump(dict(data), sort_keys=False).encode()


def reason(content: bytes, node: str = "peer") -> str:
    """Why ``parse_record`` rejects ``content`` read from ``node``'s branch."""
    with pytest.raises(BadRecord) as info:
        parse_record(content, node)
    return info.value.reason


# -- each record validated alone, by meaning ------------------------------------------------

ALIAS_BOMB = b"""\
node: peer
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
"""

HOSTILE: dict[str, tuple[bytes, str]] = {
    "heartbeat without timezone": (raw(record(heartbeat="2026-11-27T18:00:00")), "heartbeat has no timezone"),
    "malformed slot": (
        raw(record(workloads=[{**CRON_ROW, "slot": "2026-13-45T99:00"}])),
        "workloads[0].slot is not an ISO 8601 time: '2026-13-45T99:00'",
    ),
    "slot without timezone": (
        raw(record(workloads=[{**CRON_ROW, "slot": "2026-11-27T18:00:00"}])),
        "workloads[0].slot has no timezone",
    ),
    "appliedAt without timezone": (
        raw(record(revision={"sha": "a" * 40, "appliedAt": "2026-11-27 18:00"})),
        "revision.appliedAt has no timezone",
    ),
    "since out of range": (
        raw(record(workloads=[{**ROW, "since": "0001-01-01T00:00:00+01:00"}])),
        "workloads[0].since is out of range",
    ),
    "capacity 2**64": (
        raw(record(capacity={"cpu": 2**64, "memory": 1024})),
        "capacity.cpu is invalid: Input should be less than or equal to 1099511627776 (got an integer of 65 bits)",
    ),
    "negative memory": (raw(record(capacity={"memory": -1})), "capacity.memory is invalid"),
    "too many GPUs": (
        raw(record(capacity={"gpus": [{"uuid": f"GPU-{i}"} for i in range(MAX_GPUS + 1)]})),
        "capacity.gpus is invalid: List should have at most 1024 items",
    ),
    "replica index out of range": (raw(record(workloads=[{**ROW, "replica": 100_001}])), "workloads[0].replica"),
    "negative restarts": (raw(record(workloads=[{**ROW, "restarts": -1}])), "workloads[0].restarts is invalid"),
    "exit code out of range": (raw(record(workloads=[{**ROW, "exitCode": 2**40}])), "workloads[0].exitCode"),
    "too many rows": (raw(record(liveNodes=["n"] * 100_001)), "liveNodes is invalid: List should have at most 100000"),
    "name too long": (raw(record(workloads=[{**ROW, "name": "x" * 2000}])), "workloads[0].name is invalid"),
    "50 MB record": (b"node: peer\nx: '" + b"a" * 50_000_000 + b"'\n", f"over the {STATUS_MAX_BYTES}-byte limit"),
    "nested 17 levels": (b"node: peer\nx: " + b"[" * 17 + b"]" * 17 + b"\n", "nesting deeper than 16 levels"),
    "nested 100,000 levels": (b"node: peer\nx: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nesting depth"),
    "alias bomb": (ALIAS_BOMB, "an alias bomb?"),
    "number too long to convert": (b"node: peer\ncapacity: {cpu: 1" + b":00" * 100_000 + b"}\n", "a number of"),
    "labels not a mapping": (raw(record(labels=["a", "b"])), "labels is invalid: Input should be a valid dictionary"),
    "label value not a string": (raw(record(labels={"zone": 1})), "labels.zone is invalid"),
    "replica index as a string": (raw(record(workloads=[{**ROW, "replica": "3"}])), "workloads[0].replica is invalid"),
    "boolean as a string": (raw(record(revision={"verified": "yes"})), "revision.verified is invalid"),
    "held without namespace": (raw(record(revision={"held": [{"sha": "a" * 40}]})), "revision.held[0].namespace"),
    "held not a list": (raw(record(revision={"held": {"team-b": "a"}})), "revision.held is invalid"),
    "workloads not a list": (raw(record(workloads={"a": 1})), "workloads is invalid"),
    "missing field": (
        raw(record(workloads=[{k: v for k, v in ROW.items() if k != "specHash"}])),
        "specHash is missing",
    ),
    "node name mismatch": (raw(record(node="other")), "node field is 'other', not 'peer' as its branch says"),
    "no node": (b"heartbeat: '2026-11-27T18:00:00Z'\n", "node is missing"),
    "not a mapping": (b"- node: peer\n", "status.yaml is not one YAML mapping"),
    "empty": (b"", "status.yaml is not one YAML mapping"),
    "two documents": (b"node: peer\n---\nnode: peer\n", "more than 1 documents"),
    "duplicate key": (b"node: peer\nnode: peer\n", "duplicate key 'node'"),
    "python tag": (b"node: peer\nx: !!python/object/apply:os.system [true]\n", "is not supported"),
    "not UTF-8": (b"node: \xff\xfe\n", "not UTF-8"),
    "not YAML": (b"node: [peer\n", "unreadable YAML"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_record_is_rejected_with_a_one_line_reason(case: str) -> None:
    content, expected = HOSTILE[case]
    why = reason(content)
    assert expected in why and "\n" not in why and len(why) < 300


def test_a_good_record_round_trips_and_forward_compatible_fields_are_ignored() -> None:
    status = NodeStatus.model_validate(
        record(
            labels={"zone": "a"},
            capacity={"cpu": MAX_CAPACITY, "memory": 0, "gpus": [{"uuid": "GPU-1", "memory": 81920}]},
            workloads=[{**CRON_ROW, "slot": "2026-11-27T18:00:00+00:00", "since": "2026-11-27T18:00:00.250+05:30"}],
        )
    )
    assert parse_record(dump(status), "peer") == status
    assert (
        parse_record(b"node: peer\nfromTheFuture: {x: [1]}\nheartbeat: 2026-11-27T18:00:00Z\n", "peer").node == "peer"
    )


def test_free_text_is_clipped_not_refused() -> None:
    status = parse_record(
        raw(record(errors=[{"message": "m" * 100_000}], workloads=[{**ROW, "message": "x" * 9000}])), "peer"
    )
    assert len(status.errors[0].message) == MAX_TEXT and status.errors[0].message.endswith("...")
    assert len(status.workloads[0].message or "") == MAX_TEXT


def test_row_count_is_bounded() -> None:
    with pytest.raises(ValidationError, match="at most 100000 items"):
        NodeStatus.model_validate(record(workloads=[ROW] * 100_001))


def test_a_future_heartbeat_is_a_valid_record() -> None:
    # Not the record's fault: Membership judges it (test_future_heartbeat_is_no_witness).
    assert parse_record(raw(record(heartbeat=utc_now_iso(T0 + timedelta(days=365)))), "peer").node == "peer"


# -- future heartbeats ---------------------------------------------------------------------


def test_future_heartbeat_is_no_witness() -> None:
    m = Membership()
    ahead = NodeStatus(node="a", heartbeat=utc_now_iso(T0 + timedelta(hours=1)))
    # A dead node whose clock runs an hour ahead: live from our first sight of its commit ...
    assert m.view({"a": ahead}, {"a": "c0"}, 30, now=T0, monotonic=100.0).live == {"a"}
    later = m.view({"a": ahead}, {"a": "c0"}, 30, now=T0 + timedelta(seconds=31), monotonic=131.0)
    # ... for one timeout, not for as long as its stamp stays ahead of our clock.
    assert later.live == frozenset() and later.ages["a"] == 31.0


def test_a_heartbeat_within_the_tolerance_still_counts() -> None:
    m = Membership()
    nearly = NodeStatus(node="a", heartbeat=utc_now_iso(T0 + timedelta(seconds=1)))
    m.view({"a": nearly}, {"a": "c0"}, 30, now=T0, monotonic=0.0)
    m.view({"a": nearly}, {"a": "c1"}, 30, now=T0, monotonic=1.0)
    # Commit c1 was first seen 40 s ago, but a stamp under a second ahead is still a witness.
    view = m.view({"a": nearly}, {"a": "c1"}, 30, now=T0 + timedelta(seconds=0.5), monotonic=41.0)
    assert view.live == {"a"} and view.ages["a"] == 0.0
    ahead = NodeStatus(node="a", heartbeat=utc_now_iso(T0 + timedelta(seconds=3)))
    assert m.view({"a": ahead}, {"a": "c1"}, 30, now=T0 + timedelta(seconds=0.5), monotonic=41.0).live == frozenset()


# -- containment: the last good record -----------------------------------------------------


class Branches:
    """Status branches as a StatusBoard sees them: node -> commit, and each commit's status.yaml."""

    def __init__(self) -> None:
        self.heads: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self.reads: list[dict[str, str]] = []
        # Reading any of these nodes' branches fails (as a timed-out or failed git cat-file would).
        self.broken: dict[str, Exception] = {}

    def put(self, node: str, content: bytes | None) -> str:
        """Move ``node``'s branch to a new commit holding ``content`` (None: no status.yaml)."""
        sha = hashlib.sha1(f"{node}{len(self.heads)}{len(self.files)}".encode() + (content or b"")).hexdigest()
        self.heads[node] = sha
        if content is not None:
            self.files[sha] = content
        return sha

    def read(self, wanted: dict[str, str]) -> dict[str, bytes]:
        """The StatusReader: status.yaml of each wanted commit, raising for a broken branch."""
        self.reads.append(dict(wanted))
        for node in wanted.keys() & self.broken.keys():
            raise self.broken[node]
        return {n: self.files[sha] for n, sha in wanted.items() if sha in self.files}


def look(board: StatusBoard, branches: Branches, at: float, timeout: float = 30, keep: float = 36) -> ClusterView:
    """The board's view ``at`` seconds after T0 (wall clock and monotonic clock alike)."""
    return board.view(branches.heads, branches.read, timeout, keep, now=T0 + timedelta(seconds=at), monotonic=at)


def test_a_bad_record_keeps_the_last_good_one_ageing_until_it_expires(caplog: pytest.LogCaptureFixture) -> None:
    branches, board = Branches(), StatusBoard()
    branches.put("peer", raw(record(workloads=[ROW])))
    assert look(board, branches, 0).live == {"peer"}
    branches.put("peer", raw(record(heartbeat="2026-11-27T18:00:05")))
    with caplog.at_level(logging.WARNING, logger="gitops.cluster"):
        views = [look(board, branches, at) for at in (5, 20, 31, 37)]
    assert [v.rejected for v in views] == [{"peer": "heartbeat has no timezone"}] * 4
    # Its last good record still speaks for it, ageing from that record's own heartbeat ...
    assert [v.ages.get("peer") for v in views] == [5.0, 20.0, 31.0, None]
    assert [v.reports["peer"].workloads[0].name for v in views[:3]] == ["db"] * 3
    # ... live for placement until the node timeout, reported until its claims expire.
    assert [v.live for v in views] == [{"peer"}, {"peer"}, frozenset(), frozenset()]
    assert "peer" not in views[3].reports
    # One warning and one read per bad commit, not one per pass.
    assert [r.getMessage() for r in caplog.records] == [
        f"status of peer at {branches.heads['peer'][:12]} rejected: heartbeat has no timezone"
    ]
    assert len(branches.reads) == 2


def test_a_vanished_branch_keeps_its_claims_until_they_expire() -> None:
    branches, board = Branches(), StatusBoard()
    branches.put("peer", raw(record(workloads=[ROW])))
    look(board, branches, 0)
    del branches.heads["peer"]
    kept = look(board, branches, 10)
    assert kept.reports["peer"].workloads[0].name == "db" and kept.ages["peer"] == 10.0 and not kept.rejected
    assert look(board, branches, 35).live == frozenset()
    assert "peer" not in look(board, branches, 36.5).reports
    # Once forgotten, it is gone for good, even from the membership's memory.
    assert "peer" not in look(board, branches, 100).ages


def test_an_unreadable_branch_is_contained_and_read_again(caplog: pytest.LogCaptureFixture) -> None:
    branches, board = Branches(), StatusBoard()
    branches.put("peer", raw(record()))
    branches.put("other", raw(record(node="other")))
    look(board, branches, 0)
    branches.put("peer", raw(record(heartbeat=utc_now_iso(T0 + timedelta(seconds=2)))))
    branches.put("other", raw(record(node="other", heartbeat=utc_now_iso(T0 + timedelta(seconds=2)))))
    branches.broken = {"peer": OSError("git cat-file timed out")}
    with caplog.at_level(logging.WARNING, logger="gitops.cluster"):
        failing = [look(board, branches, at) for at in (2, 3)]
    assert failing[0].rejected == {
        "peer": "status branch unreadable: git cat-file timed out",
        "other": "status branch unreadable: git cat-file timed out",
    }
    # Read again alone, the branch that fails no longer holds back the one that does not.
    assert failing[1].rejected == {"peer": "status branch unreadable: git cat-file timed out"}
    assert failing[1].reports["other"].heartbeat == utc_now_iso(T0 + timedelta(seconds=2))
    assert failing[1].reports["peer"].heartbeat == utc_now_iso(T0)
    assert len([r for r in caplog.records if r.getMessage().startswith("status of peer")]) == 1
    branches.broken = {}
    healed = look(board, branches, 4)
    assert healed.rejected == {} and healed.reports["peer"].heartbeat == utc_now_iso(T0 + timedelta(seconds=2))


def test_a_commit_without_status_yaml_or_copied_from_another_node_is_rejected() -> None:
    branches, board = Branches(), StatusBoard()
    good = raw(record())
    branches.put("peer", good)
    branches.put("copycat", good)
    branches.put("empty", None)
    view = look(board, branches, 0)
    assert view.rejected == {
        "copycat": "node field is 'peer', not 'copycat' as its branch says",
        "empty": "no status.yaml on the branch",
    }
    assert set(view.reports) == {"peer"}


def test_a_remembered_commit_is_not_read_back() -> None:
    branches, board = Branches(), StatusBoard()
    own = NodeStatus(node="me", heartbeat=utc_now_iso(T0))
    sha = branches.put("me", dump(own))
    board.remember("me", sha, own)
    assert look(board, branches, 0).reports["me"] is own and branches.reads == []


# -- every reader of records that passed ----------------------------------------------------


def test_cron_runs_read_any_valid_slot_and_skip_an_unvalidated_one() -> None:
    slots = ["2026-11-27T18:00:00Z", "2026-11-27T19:30:00+01:30", "2026-11-27T18:00:00.000+00:00"]
    status = parse_record(
        raw(record(workloads=[{**CRON_ROW, "replica": i, "slot": s} for i, s in enumerate(slots)])), "peer"
    )
    assert _cluster_runs([status]) == {("default", "tick"): {T0: "running"}}
    # model_copy does not validate: a reader still must not raise on what it holds.
    junk = status.model_copy(update={"workloads": [status.workloads[0].model_copy(update={"slot": "junk"})]})
    assert _cluster_runs([junk]) == {}
    CronRuns().update(ManifestSet(), "me", [node_info("me")], [junk], T0)  # no CronJobs in the repo


def test_placement_reads_capacities_at_their_bounds() -> None:
    big = {"cpu": MAX_CAPACITY, "memory": MAX_CAPACITY, "gpus": [{"uuid": f"GPU-{i}"} for i in range(MAX_GPUS)]}
    branches = Branches()
    branches.put("big", raw(record(node="big", capacity=big)))
    branches.put("small", raw(record(node="small", capacity={"cpu": 1000, "memory": 1024})))
    view = look(StatusBoard(), branches, 0)
    web = workload("web", 20, cpu=100, mem=64)
    assignment = place([web], view.node_infos(frozenset()), view.placements())
    assert not assignment.unschedulable and sum(len(v) for v in assignment.per_node.values()) == 20


def test_gitops_status_document_shows_rejected_and_odd_but_valid_records() -> None:
    branches = Branches()
    branches.put("old", raw(record(node="old", heartbeat="1970-01-01T00:00:00+00:00")))
    branches.put("ahead", raw(record(node="ahead", heartbeat=utc_now_iso(T0 + timedelta(days=300)))))
    branches.put("kept", raw(record(node="kept")))
    board = StatusBoard()
    look(board, branches, 0)
    branches.put("kept", raw(record(node="kept", capacity={"cpu": 2**64})))
    branches.put("evil", raw(record(node="evil", heartbeat="2026-11-27T18:00:00")))
    doc = status_document(ManifestSet(), look(board, branches, 1), "rev")
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert list(nodes) == ["ahead", "evil", "kept", "old"]
    assert nodes["evil"]["rejected"] == "heartbeat has no timezone" and nodes["evil"]["revision"] is None
    assert nodes["kept"]["rejected"].startswith("capacity.cpu is invalid") and nodes["kept"]["live"]
    assert nodes["old"]["rejected"] is None and nodes["old"]["heartbeatAgeSeconds"] > 1e9
    text = render_status(json.loads(json.dumps(doc)))
    assert "evil                 rejected: heartbeat has no timezone" in text
    assert "current one rejected: capacity.cpu is invalid" in text


def test_gitops_status_shows_verification_refusal() -> None:
    branches = Branches()
    why = "commit verification refused 0123456789ab: commit 0123 not signed (signer none); keeping verified revision x"
    errors = [{"message": "other"}, {"field": "verify", "message": why}]
    branches.put("n1", raw(record(node="n1", revision={"sha": "a" * 40, "verified": True}, errors=errors)))
    doc = status_document(ManifestSet(), look(StatusBoard(), branches, 0), "b" * 40)
    [node] = doc["nodes"]
    assert node["verified"] is True and len(node["errors"]) == 2
    text = render_status(json.loads(json.dumps(doc)))
    assert "rev aaaaaaa verified (behind)" in text and f"      {why}" in text and "other" not in text


def test_gitops_status_shows_held_namespaces_and_why() -> None:
    branches = Branches()
    held = {"namespace": "team-b", "sha": "c" * 40, "commit": "d" * 40, "signer": "alice@example.com"}
    held["reason"] = "alice@example.com may not change namespace team-b (allowed: bob@example.com)"
    branches.put("n1", raw(record(node="n1", revision={"sha": "a" * 40, "verified": True, "held": [held]})))
    doc = status_document(ManifestSet(), look(StatusBoard(), branches, 0), "a" * 40)
    [node] = doc["nodes"]
    assert node["held"] == [held]
    text = render_status(json.loads(json.dumps(doc)))
    assert (
        f"      namespace team-b held at ccccccc: commit {'d' * 12} (signer alice@example.com): {held['reason']}"
        in text
    )


def test_gitops_status_text_escapes_terminal_controls_from_peers() -> None:
    db = workload("db")
    hostile = "boom\x1b[2J\x07\rforged line\nnext \x9b31m \u202egnp.exe and ü, 日本, ✓"
    row = {**ROW, "specHash": db.spec_hash, "state": "failed", "reason": "Error\x1b]0;pwned\x07", "message": hostile}
    errors = [{"field": "verify", "message": "refused \x1b[31mred\x1b[0m\x00"}]
    branches = Branches()
    branches.put("n1", raw(record(node="n1", revision={"sha": "a" * 40}, workloads=[row], errors=errors)))
    doc = status_document(ManifestSet(workloads=(db,)), look(StatusBoard(), branches, 0), "b" * 40)
    assert doc["workloads"][0]["replicas"][0]["message"] == hostile, "the document keeps the text as the peer wrote it"
    text = render_status(json.loads(json.dumps(doc)))
    controls = [ch for ch in text if ch != "\n" and not ch.isprintable()]
    assert controls == []
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x9b" not in text
    assert (
        "[0] n1: failed Error\\x1b]0;pwned\\x07 boom\\x1b[2J\\x07\\rforged line\\nnext \\x9b31m "
        "\\u202egnp.exe and ü, 日本, ✓" in text
    )
    assert "      refused \\x1b[31mred\\x1b[0m\\x00" in text
    # One line per entry: an embedded newline does not start a line of its own.
    assert not any(line.startswith("next") for line in text.splitlines())
    # JSON output is escaped by json.dumps already.
    assert "\x1b" not in json.dumps(doc)


def test_policy_keeps_blocking_an_exclusive_replica_a_broken_peer_last_claimed() -> None:
    db = workload("db", strategy="Recreate")
    cluster = ClusterSpec(heartbeat_seconds=1, node_timeout_seconds=5)
    keep = claims_expire_after(5, 1)
    rows = [
        {**ROW, "specHash": db.spec_hash, "state": "unknown-future-state", "replica": 7},
        {**ROW, "specHash": db.spec_hash, "exitCode": -(2**32), "restarts": 10**9, "failedSpecHash": "f"},
    ]
    branches, board = Branches(), StatusBoard()
    branches.put("peer", raw(record(workloads=rows)))
    board.view(branches.heads, branches.read, 5, keep, now=T0, monotonic=0.0)
    branches.put("peer", raw(record(workloads=[{**ROW, "replica": -1}])))

    def blocked_at(at: float) -> str | None:
        view = board.view(branches.heads, branches.read, 5, keep, now=T0 + timedelta(seconds=at), monotonic=at)
        ctx = PassContext(
            node="me",
            revision="rev",
            manifests=ManifestSet(workloads=(db,), cluster=cluster),
            view=view,
            assignment=Assignment(per_node={"me": [ReplicaId(db.key, 0)]}),
            observation=observe([], [db], {}, None, 100.0),
            memory=Memory(),
            now=100.0,
        )
        return decide(ctx).inputs.blocked.get(ReplicaId(db.key, 0))

    assert blocked_at(3) == "exclusive: waiting for peer to stop db[0]"
    assert blocked_at(8.5) == "exclusive: waiting for peer to stop db[0]"  # not live, still claiming
    assert blocked_at(keep + 0.5) is None


# -- whole passes against real repositories -------------------------------------------------


def push_status(repo: Repo, node: str, content: bytes) -> str:
    """Commit ``content`` as status.yaml onto ``gitops/status/<node>`` of ``repo``, as a peer would push it."""

    def piped(stdin: bytes, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo.path, input=stdin, capture_output=True, check=True
        ).stdout.decode()

    blob = piped(content, "hash-object", "-w", "--stdin").strip()
    tree = piped(f"100644 blob {blob}\tstatus.yaml\n".encode(), "mktree").strip()
    commit = git(repo.path, "commit-tree", tree, "-m", f"{node}: status").strip()
    git(repo.path, "update-ref", f"refs/heads/gitops/status/{node}", commit)
    return commit


def fresh(node: str, **fields: Any) -> bytes:
    """A record stamped now (so its node counts as live) with ``fields``."""
    return raw(record(node=node, heartbeat=utc_now_iso(), **fields))


EVIL: dict[str, tuple[bytes, str]] = {
    "evil": (fresh("evil", workloads=[{**CRON_ROW, "slot": "not-a-time"}]), "workloads[0].slot is not an ISO 8601"),
    "evil-tz": (raw(record(node="evil-tz", heartbeat=datetime.now().isoformat())), "heartbeat has no timezone"),
    "evil-cap": (fresh("evil-cap", capacity={"cpu": 2**64, "memory": 2**64}), "capacity.cpu is invalid"),
    "evil-big": (b"node: evil-big\nx: '" + b"a" * STATUS_MAX_BYTES + b"'\n", "byte limit"),
    "evil-deep": (b"node: evil-deep\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nesting depth"),
    "evil-bomb": (ALIAS_BOMB.replace(b"peer", b"evil-bomb"), "alias bomb"),
    "evil-types": (fresh("evil-types", workloads="all of them"), "workloads is invalid"),
    "evil-name": (fresh("someone-else"), "node field is 'someone-else'"),
}


def image_env(node: str) -> set[str]:
    """The MODE env of every running container of ``node`` (which spec it runs)."""
    client = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        envs = [
            client.api.inspect_container(r["Id"])["Config"]["Env"] for r in managed(node) if r["State"] == "running"
        ]
    finally:
        client.close()
    return {e for env in envs for e in env if e.startswith("MODE=")}


def converge(rec: Reconciler) -> None:
    """Pass until nothing is left to do, old containers removed in the background included."""
    for _ in range(5):
        if not rec.run_pass().plan.actions:
            break
    wait_for(rec.executor.idle, what="background removals")


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_a_pass_survives_hostile_records_and_deploys_new_commits(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put("apps/web.yaml", deployment("web", 1, engine=True, env={"MODE": "one"}))
    for node, (content, _) in EVIL.items():
        push_status(repo, node, content)
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state")
    try:
        assert rec.run_pass().ok
        assert image_env(node_name) == {"MODE=one"}
        view = rec._cluster_view(30)
        assert set(view.rejected) == set(EVIL)
        for node, (_, expected) in EVIL.items():
            assert expected in view.rejected[node], node
        assert set(view.reports) == {node_name}
        repo.put("apps/web.yaml", deployment("web", 1, engine=True, env={"MODE": "two"}))
        converge(rec)
        assert image_env(node_name) == {"MODE=two"}
    finally:
        rec.close()


CLUSTER = """\
apiVersion: gitops/v1
kind: Cluster
metadata: {name: cluster}
spec: {heartbeatSeconds: 2, nodeTimeoutSeconds: 4}
"""


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_a_peer_whose_record_turns_bad_keeps_its_exclusive_claims(repo: Repo, node_name: str, tmp_path: Path) -> None:
    recreate = "  replicas: 1\n  strategy: {type: Recreate}\n"
    db = deployment("db", 1, engine=True, env={"MODE": "db"}).replace("  replicas: 1\n", recreate, 1)
    repo.write("cluster.yaml", CLUSTER)
    repo.write("apps/db.yaml", db)
    repo.put("apps/web.yaml", deployment("web", 1, engine=True, env={"MODE": "one"}))
    # Peer p runs db[0] (exclusive), then starts publishing records this node must reject.
    push_status(repo, "p", fresh("p", workloads=[{**ROW, "state": "ready"}]))
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state")
    db0 = ReplicaId(WorkloadKey.of("default", "Deployment", "db"), 0)
    try:
        # Past the start-up settling (one node timeout), passing as the daemon would.
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            rec.run_pass()
            time.sleep(0.3)
        push_status(repo, "p", fresh("p", workloads=[{**ROW, "state": "ready", "since": "yesterday"}]))
        repo.put("apps/web.yaml", deployment("web", 1, engine=True, env={"MODE": "two"}))
        report = rec.run_pass()
        assert report.plan.waiting.get(db0) == (Reason.WAITING, "exclusive: waiting for p to stop db[0]")
        before = rec._cluster_view(4)
        time.sleep(0.2)
        after = rec._cluster_view(4)
        assert after.rejected == {"p": "workloads[0].since is not an ISO 8601 time: 'yesterday'"}
        assert after.reports["p"].workloads[0].name == "db" and after.ages["p"] > before.ages["p"] > 4
        assert "p" not in after.live
        converge(rec)
        assert image_env(node_name) == {"MODE=two"}  # web moved on; db never started beside p's
    finally:
        rec.close()


def test_gitops_status_names_a_bad_record_and_exits_0(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.put("apps/web.yaml", deployment("web", 1, engine=True))
    push_status(repo, "good", fresh("good"))
    push_status(repo, "evil", EVIL["evil"][0])
    push_status(repo, "evil-cap", EVIL["evil-cap"][0])
    assert main(["status", "--repo", str(repo.path), "-o", "json"]) == 0
    out, err = capsys.readouterr()
    nodes = {n["name"]: n for n in json.loads(out)["nodes"]}
    assert nodes["good"]["rejected"] is None and nodes["good"]["live"]
    assert nodes["evil"]["rejected"].startswith("workloads[0].slot is not an ISO 8601 time")
    assert nodes["evil-cap"]["rejected"].startswith("capacity.cpu is invalid")
    assert "status of evil at" in err
    assert main(["status", "--repo", str(repo.path)]) == 0
    out, _ = capsys.readouterr()
    assert "rejected: workloads[0].slot is not an ISO 8601 time" in out


def test_gitops_status_shows_what_each_node_admits() -> None:
    branches = Branches()
    policy = {"default": "baseline", "namespaces": {"mon": "privileged"}, "hostPaths": ["/var/log"], "registries": []}
    branches.put("n1", raw(record(node="n1", policy=policy)))
    branches.put("n2", raw(record(node="n2")))
    doc = status_document(ManifestSet(), look(StatusBoard(), branches, 0), "rev")
    assert [n["policy"] for n in doc["nodes"]] == [policy, None]
    text = render_status(json.loads(json.dumps(doc)))
    assert "      admits baseline (mon: privileged), host paths /var/log" in text
    assert text.count("admits") == 1
