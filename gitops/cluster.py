"""The cluster view: which nodes are live and what they report, read from status branches.

Status records are untrusted input (docs/status.md, "Untrusted records"). ``StatusBoard`` validates each
one alone; a rejected or unreadable record is reported and contained, never raised, and
its node keeps its last good record (ageing as usual) so that what it claimed to run stays
claimed until that record expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gitops.identity import ReplicaId
from gitops.placement import NodeInfo
from gitops.states import RELEASING_REASONS, RUNNING_STATES
from gitops.status import BadRecord, NodeStatus, parse_record, taints_of

log = logging.getLogger(__name__)

# Margin after a peer's timeout before its exclusive replicas are taken over, so that its
# own fencing (at the timeout, by its own clock) has certainly happened first.
FENCE_MARGIN_S = 2.0
# A heartbeat stamped later than this ahead of our clock is no witness of freshness.
FUTURE_TOLERANCE_S = 1.0

# Reads ``status.yaml`` of each (node -> commit) given: its bytes, or why they were not read
# (too large); a node missing from the answer has none.
StatusReader = Callable[[dict[str, str]], Mapping[str, bytes | str]]
# Checks who signed each (node -> commit) given: why a node's commit is not to be trusted, or
# None when it is; a node missing from the answer is not trusted. Raises when it cannot check.
StatusVerifier = Callable[[dict[str, str]], Mapping[str, str | None]]


def claims_expire_after(node_timeout_s: float, heartbeat_s: float) -> float:
    """Age past which a peer's record claims nothing, not even its exclusive replicas."""
    return node_timeout_s + 2 * heartbeat_s + FENCE_MARGIN_S


@dataclass(frozen=True)
class ClusterView:
    """Reports of every node that has a status branch, and which of them are live.

    A node whose branch vanished or holds a rejected record is still reported with its
    last good record until that expires; ``rejected`` says why its current record is not used.
    """

    reports: Mapping[str, NodeStatus]
    live: frozenset[str]
    ages: Mapping[str, float] = field(default_factory=dict)
    rejected: Mapping[str, str] = field(default_factory=dict)

    def node_infos(self, cordoned: frozenset[str]) -> list[NodeInfo]:
        """Live nodes as placement inputs, sorted by name."""
        out = []
        for name in sorted(self.live):
            r = self.reports[name]
            out.append(
                NodeInfo(
                    name=name,
                    labels=r.labels,
                    cpu_millis=r.capacity.cpu,
                    memory_mib=r.capacity.memory,
                    gpus=tuple(g.uuid for g in r.capacity.gpus),
                    cordoned=name in cordoned,
                    policy=r.policy,
                    taints=taints_of(r),
                )
            )
        return out

    def placements(self) -> dict[ReplicaId, str]:
        """Where live nodes say each replica runs: the sticky input to placement.

        Copies a node is only keeping until a successor is ready (or keeps because the
        revision is broken) are not claims, or the replica could bounce back to them.
        """
        prev: dict[ReplicaId, str] = {}
        for name in sorted(self.live):
            for r in self.reports[name].workloads:
                if r.state in RUNNING_STATES and r.reason not in RELEASING_REASONS:
                    prev.setdefault(r.rid, name)
        return prev


class Membership:
    """Judges liveness so that clock skew between nodes cannot flap membership.

    A heartbeat's own timestamp is trusted only as one witness; the other is this
    node's monotonic clock at the moment it first saw that status commit. A node is
    live while either witness is younger than the timeout, so a peer whose clock runs
    a few seconds behind still counts as live as long as its commits keep changing.
    A stamp from the future is no witness at all: a dead node whose clock ran ahead
    would otherwise stay live for as long as it was ahead.
    """

    def __init__(self) -> None:
        # node -> (commit, monotonic time first seen, whether that was our first sight of the node)
        self._first_seen: dict[str, tuple[str, float, bool]] = {}

    def view(
        self,
        reports: Mapping[str, NodeStatus],
        heads: Mapping[str, str],
        timeout_s: float,
        now: datetime | None = None,
        monotonic: float | None = None,
    ) -> ClusterView:
        """Build the view from fetched reports and their commit ids."""
        now = now or datetime.now(UTC)
        mono = time.monotonic() if monotonic is None else monotonic
        live: set[str] = set()
        ages: dict[str, float] = {}
        for name in self._first_seen.keys() - reports.keys():
            del self._first_seen[name]
        for name, report in reports.items():
            sha = heads.get(name, "")
            seen = self._first_seen.get(name)
            if seen is None or seen[0] != sha:
                seen = (sha, mono, seen is None)
                self._first_seen[name] = seen
            seen_age = mono - seen[1]
            hb = report.heartbeat_time()
            stamp_age = (now - hb).total_seconds() if hb else float("inf")
            if hb is None:
                # A record without a heartbeat says why the node runs nothing (docs/security.md): never live.
                age = float("inf")
            elif stamp_age < -FUTURE_TOLERANCE_S:
                # Only our own clock counts: the commit is as old as our first sight of it.
                age = seen_age
            else:
                # First sight says nothing about when it was written; a later change does.
                observed_age = float("inf") if seen[2] else seen_age
                age = min(max(stamp_age, 0.0), observed_age)
            ages[name] = age
            if age <= timeout_s:
                live.add(name)
        return ClusterView(reports=dict(reports), live=frozenset(live), ages=ages)


@dataclass(frozen=True)
class _Unusable:
    """Why a commit's record is not used; ``retry`` when reading it failed rather than the record."""

    reason: str
    retry: bool = False


class StatusBoard:
    """Peers' records read from their status branches, each validated alone, the last good one kept.

    Each commit is read and validated once (a warning is logged once per bad commit). A
    node whose branch vanishes, or whose new record is rejected or cannot be read, keeps
    its last good record, ageing from that record's own witnesses, until it is older than
    ``forget_after_s``: its exclusive replicas stay claimed until its fencing has surely
    stopped them, though it stops counting as live for placement after the node timeout.
    """

    def __init__(self, membership: Membership | None = None) -> None:
        self.membership = membership or Membership()
        self._records: dict[tuple[str, str], NodeStatus | _Unusable] = {}
        self._good: dict[str, tuple[str, NodeStatus]] = {}

    def remember(self, node: str, sha: str, status: NodeStatus) -> None:
        """Take ``status`` as the record at ``sha`` on ``node``'s branch (one we just pushed) without reading it."""
        self._records[(node, sha)] = status

    def view(
        self,
        heads: Mapping[str, str],
        read: StatusReader,
        timeout_s: float,
        forget_after_s: float,
        now: datetime | None = None,
        monotonic: float | None = None,
        verify: StatusVerifier | None = None,
    ) -> ClusterView:
        """The cluster view from the status branches' heads (node -> commit), reading only new commits.

        With ``verify``, a new commit's record is used only if ``verify`` trusts the commit (status
        signing); one it does not trust is rejected like an invalid record. Remembered ones are trusted.
        """
        self._read(heads, read, verify)
        self._records = {(n, sha): self._records[(n, sha)] for n, sha in heads.items()}
        rejected: dict[str, str] = {}
        for node, sha in heads.items():
            record = self._records[(node, sha)]
            if isinstance(record, NodeStatus):
                self._good[node] = (sha, record)
            else:
                rejected[node] = record.reason
        reports = {n: r for n, (_, r) in self._good.items()}
        view = self.membership.view(reports, {n: sha for n, (sha, _) in self._good.items()}, timeout_s, now, monotonic)
        # A last good record kept for a vanished or broken branch is dropped once it claims nothing.
        expired = {n for n, (sha, _) in self._good.items() if heads.get(n) != sha and view.ages[n] > forget_after_s}
        for n in expired:
            del self._good[n]
        return ClusterView(
            reports={n: r for n, r in view.reports.items() if n not in expired},
            live=view.live - expired,
            ages={n: a for n, a in view.ages.items() if n not in expired},
            rejected=rejected,
        )

    def _read(self, heads: Mapping[str, str], read: StatusReader, verify: StatusVerifier | None) -> None:
        new: dict[str, str] = {}
        again: list[dict[str, str]] = []
        for node, sha in heads.items():
            known = self._records.get((node, sha))
            if known is None:
                new[node] = sha
            elif isinstance(known, _Unusable) and known.retry:
                # Alone, so that a branch that cannot be read holds back nobody else's.
                again.append({node: sha})
        for batch in (new, *again):
            if batch:
                self._read_batch(batch, read, verify)

    def _read_batch(self, batch: dict[str, str], read: StatusReader, verify: StatusVerifier | None) -> None:
        raw: Mapping[str, bytes | str] | None
        trust: Mapping[str, str | None] = {}
        try:
            # One call each for the whole batch: every pass reads every peer's new head.
            if verify is not None:
                trust = verify(batch)
            raw, failure = read(batch), ""
        except Exception as e:  # whatever the reader hit, the pass goes on with the last good records
            raw, failure = None, f"status branch unreadable: {e}"
        for node, sha in batch.items():
            record: NodeStatus | _Unusable
            if raw is None:
                record = _Unusable(failure, retry=True)
            elif verify is not None and (node not in trust or trust[node] is not None):
                record = _Unusable(trust.get(node) or f"status commit not signed by node {node}")
            elif node not in raw:
                record = _Unusable("no status.yaml on the branch")
            elif isinstance(got := raw[node], str):
                record = _Unusable(got)  # refused unread (too large)
            else:
                try:
                    record = parse_record(got, node)
                except BadRecord as e:
                    record = _Unusable(e.reason)
            if isinstance(record, _Unusable) and record != self._records.get((node, sha)):
                log.warning("status of %s at %s rejected: %s", node, sha[:12], record.reason)
            self._records[(node, sha)] = record
