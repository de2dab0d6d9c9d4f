"""CronJob runs on this node: which scheduled slots it owns, starts, stops and forgets.

Each slot is owned by one live node (rendezvous hash of CronJob and slot, see
gitops/cronjobs.py); the owner turns it into a run, a Job-like workload named after
the slot, and reports it with ``cronjob`` and ``slot`` so every node sees every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gitops.admission import verdict
from gitops.cronjobs import decide, due_slots, history_to_prune, next_fire_in, run_name, slot_owner
from gitops.identity import WorkloadKey
from gitops.model import ManifestSet, Workload
from gitops.placement import NodeInfo
from gitops.states import FINISHED_STATES, State
from gitops.status import NodeStatus, ReplicaStatus

# On start-up, slots this recent are still started (a daemon restart must not drop a run).
STARTUP_LOOKBACK = timedelta(seconds=5)


@dataclass(frozen=True)
class CronRun:
    """One scheduled run: its CronJob, its slot, and the workload that runs it."""

    cronjob: WorkloadKey
    slot: datetime
    workload: Workload


def run_workload(cron: Workload, slot: datetime) -> Workload:
    """The Job-like workload of one run: the CronJob's pod, named after the slot."""
    completions = cron.job.completions if cron.job else 1
    return cron.model_copy(update={"name": run_name(cron.name, slot), "replicas": completions, "cron": cron.cron})


class CronRuns:
    """The runs this node started, and the scheduling cursor per CronJob."""

    def __init__(self) -> None:
        self.runs: dict[str, CronRun] = {}
        self._since: dict[str, datetime] = {}

    def recover(self, own: NodeStatus | None, mset: ManifestSet) -> None:
        """Take back the runs our status still lists, for CronJobs that still exist."""
        if own is None:
            return
        # Keyed by namespace too: two teams may each have a CronJob of one name.
        crons = {(w.namespace, w.name): w for w in mset.workloads if w.kind == "CronJob"}
        for r in own.workloads:
            cron = crons.get((r.namespace, r.cronjob or ""))
            slot = r.slot_time()
            if r.kind == "CronJob" and slot is not None and cron is not None:
                run = run_workload(cron, slot)
                self.runs[run.key] = CronRun(cron.key, slot, run)

    def update(
        self,
        mset: ManifestSet,
        node: str,
        nodes: Sequence[NodeInfo],
        reports: Iterable[NodeStatus],
        now: datetime,
    ) -> None:
        """Start the due slots this node owns, stop replaced runs, forget runs past their history.

        A slot is owned among the nodes a replica of it could go to (a node that publishes no
        admission policy, an older daemon, admits everything, as in placement).
        """
        crons = [w for w in mset.workloads if w.kind == "CronJob" and w.cron is not None]
        known = _cluster_runs(reports)
        for w in crons:
            assert w.cron is not None
            since = self._since.get(w.key, now - STARTUP_LOOKBACK)
            self._since[w.key] = now
            # A run goes where a replica of it could: required node affinity, taints and admission as in placement.
            rules = w.scheduling
            eligible = [
                (n.name, n.labels)
                for n in nodes
                if rules.node_affinity(n.name, n.labels)
                and rules.blocking_taint(n.taints, False, now) is None
                and (n.policy is None or not verdict(w, n.policy))
            ]
            owned = [
                s for s in due_slots(w.cron, since, now) if slot_owner(w.key, s, eligible, w.node_selector) == node
            ]
            # Runs we started are running until a report (ours included) says otherwise.
            started = {r.slot: State.RUNNING for r in self.runs.values() if r.cronjob == w.key}
            runs = {**started, **known.get((w.namespace, w.name), {})}
            decision = decide(w, runs, owned)
            for slot in decision.start:
                run = run_workload(w, slot)
                self.runs[run.key] = CronRun(w.key, slot, run)
            for slot in decision.stop:
                self.runs.pop(run_workload(w, slot).key, None)
            finished = {slot: state for slot, state in runs.items() if state in FINISHED_STATES}
            for slot in history_to_prune(finished, w.cron.successful_history, w.cron.failed_history):
                self.runs.pop(run_workload(w, slot).key, None)
        alive = {w.key for w in crons}
        self.runs = {k: r for k, r in self.runs.items() if r.cronjob in alive}

    def workloads(self) -> list[Workload]:
        """The run workloads this node must run (or keep, finished, within history)."""
        return [r.workload for r in self.runs.values()]

    def annotate(self, row: ReplicaStatus) -> ReplicaStatus:
        """Add ``cronjob`` and ``slot`` to the status row of a run."""
        run = self.runs.get(row.key)
        if run is None:
            return row
        return row.model_copy(update={"cronjob": run.cronjob.name, "slot": run.slot.isoformat()})

    def next_fire_in(self, mset: ManifestSet, now: datetime) -> float | None:
        """Seconds until the next scheduled slot of any CronJob."""
        return next_fire_in([w.cron for w in mset.workloads if w.kind == "CronJob" and w.cron], now)


def _cluster_runs(reports: Iterable[NodeStatus]) -> dict[tuple[str, str], dict[datetime, str]]:
    """(namespace, cronjob name) -> slot -> state, from every node's report."""
    out: dict[tuple[str, str], dict[datetime, str]] = {}
    for report in reports:
        for r in report.workloads:
            # The same parse validation did: a record that passed cannot make it raise.
            slot = r.slot_time()
            if r.kind != "CronJob" or slot is None or not r.cronjob:
                continue
            state = r.state if r.state in FINISHED_STATES else State.RUNNING
            slots = out.setdefault((r.namespace, r.cronjob), {})
            # A run with several completion rows is running until every row finished.
            if state == State.RUNNING or slot not in slots:
                slots[slot] = state
    return out
