"""CronJobs without a leader: when each runs, which live node starts it, and what to keep.

Every scheduled run ("slot", an aware UTC datetime) is owned by one node chosen by rendezvous hashing over
(cronjob key, slot), so all nodes that read the same status agree on who starts it. Everything here is pure:
the clock and the cluster-wide view of runs are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from gitops.manifests.cron import validate_schedule
from gitops.manifests.names import MAX_LABEL
from gitops.model import CronSpec, Workload
from gitops.placement import rendezvous
from gitops.states import State

# Kubernetes refuses to catch up on more than 100 missed runs; we keep the newest ones instead.
MAX_DUE = 100
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# APScheduler would otherwise start counting from the wall clock at construction time.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class CronDecision:
    """What this node does now for one CronJob: runs to start, running runs to stop, slots to record as skipped."""

    start: tuple[datetime, ...] = ()
    stop: tuple[datetime, ...] = ()
    skip: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class _Schedule:
    trigger: Any
    zone: ZoneInfo
    # Like Debian cron, a job at a fixed hour runs once when clocks fall back and repeat that hour
    # (Kubernetes runs it twice: kubernetes/kubernetes#121594); hour '*' jobs keep firing in real time.
    once_per_wall_time: bool

    def next_after(self, after: datetime) -> datetime | None:
        fire = self._first_from(after + _TICK)
        while fire is not None and self.once_per_wall_time and _is_repeat(fire.astimezone(self.zone)):
            fire = self._first_from(fire + _TICK)
        return fire

    def _first_from(self, moment: datetime) -> datetime | None:
        # Not get_next_fire_time(previous, ...): given a UTC previous time, APScheduler 3.11 returns that same
        # fire time again at the end of DST.
        fire = self.trigger.get_next_fire_time(None, moment)
        return None if fire is None else fire.astimezone(UTC)

    def fires(self, after: datetime, until: datetime, most: int) -> list[datetime]:
        out: list[datetime] = []
        fire = self.next_after(after)
        while fire is not None and fire <= until and len(out) < most:
            out.append(fire)
            fire = self.next_after(fire)
        return out


def _is_repeat(local: datetime) -> bool:
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _expand(field: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    # Expanding to explicit values sidesteps APScheduler's dialect ('?', mixed names and numbers).
    def number(token: str) -> int:
        return low + names.index(token.lower()) if token.lower() in names else int(token)

    values: set[int] = set()
    for term in field.split(","):
        body, _, step = term.partition("/")
        first, _, last = body.partition("-")
        if first in ("*", "?"):
            start, end = low, high
        else:
            start = number(first)
            end = number(last) if last else high if step else start
        values.update(range(start, end + 1, int(step or 1)))
    return values


def _spell(values: set[int], low: int, high: int) -> str:
    return "*" if values == set(range(low, high + 1)) else ",".join(map(str, sorted(values)))


def _unrestricted(field: str) -> bool:
    # robfig/cron (used by Kubernetes): a day field counts as '*' if any term is '*' or '?' without a step.
    return any(re.fullmatch(r"[*?](/1)?", term) for term in field.split(","))


def _schedule(cron: CronSpec) -> _Schedule:
    text = validate_schedule(cron.schedule)
    parts = _MACROS.get(text, text).split()
    second, minute, hour, day, month, weekday = parts if len(parts) == 6 else ["0", *parts]
    zone = ZoneInfo(cron.time_zone)
    common = {
        "second": _spell(_expand(second, 0, 59), 0, 59),
        "minute": _spell(_expand(minute, 0, 59), 0, 59),
        "hour": _spell(_expand(hour, 0, 23), 0, 23),
        "month": _spell(_expand(month, 1, 12, _MONTHS), 1, 12),
        "timezone": zone,
        "start_date": _EPOCH,
    }
    days = _spell(_expand(day, 1, 31), 1, 31)
    # Cron counts weekdays from 0 = Sunday, APScheduler from 0 = Monday.
    weekdays = _spell({(d - 1) % 7 for d in _expand(weekday, 0, 6, _DAYS)}, 0, 6)
    trigger: BaseTrigger
    if _unrestricted(day) or _unrestricted(weekday):
        trigger = CronTrigger(day=days, day_of_week=weekdays, **common)
    else:
        # With both day fields restricted, cron fires on days matching either one.
        trigger = OrTrigger([CronTrigger(day=days, **common), CronTrigger(day_of_week=weekdays, **common)])
    return _Schedule(trigger, zone, once_per_wall_time=hour != "*")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)


def trigger_for(cron: CronSpec) -> BaseTrigger:
    """APScheduler trigger for ``cron``'s wall-clock schedule (due_slots also runs fixed times once at DST end)."""
    return _schedule(cron).trigger


def due_slots(cron: CronSpec, since: datetime, now: datetime, limit: int = MAX_DUE) -> list[datetime]:
    """Fire times in (since, now], oldest first, at most the newest ``limit``, none past startingDeadlineSeconds."""
    if cron.suspend:
        return []
    since, now = _utc(since), _utc(now)
    if cron.starting_deadline_s is not None:
        # Kubernetes still starts a run exactly startingDeadlineSeconds late, so that slot stays in the window.
        since = max(since, now - timedelta(seconds=cron.starting_deadline_s) - _TICK)
    schedule = _schedule(cron)
    slots = schedule.fires(since, now, limit + 1)
    if len(slots) <= limit:
        return slots
    # Too many missed runs (a long outage of a frequent schedule): rather than walk every one, bisect on whole
    # seconds (fire times are whole seconds) for the start after which exactly ``limit`` remain.
    low, high = int(since.timestamp()), int(now.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if len(schedule.fires(datetime.fromtimestamp(middle, UTC), now, limit + 1)) > limit:
            low = middle
        else:
            high = middle
    return schedule.fires(datetime.fromtimestamp(high, UTC), now, limit)


def slot_owner(
    key: str, slot: datetime, nodes: Sequence[tuple[str, Mapping[str, str]]], node_selector: Mapping[str, str]
) -> str | None:
    """The live node that starts run ``slot`` of CronJob ``key``: highest rendezvous hash among matching nodes."""
    stamp = _utc(slot).isoformat()
    eligible = [name for name, labels in nodes if all(labels.get(k) == v for k, v in node_selector.items())]
    return rendezvous(f"{key}\0{stamp}", eligible)


def run_name(workload_name: str, slot: datetime) -> str:
    """DNS-1123 label naming the run of ``slot``: the name, cut to fit, then '-<seconds since epoch>'."""
    suffix = f"-{int(_utc(slot).timestamp())}"
    return workload_name[: MAX_LABEL - len(suffix)].rstrip("-") + suffix


def decide(workload: Workload, runs: Mapping[datetime, str], owned_due: Sequence[datetime]) -> CronDecision:
    """Apply concurrencyPolicy to the due slots this node owns, given every run known cluster-wide (slot -> state)."""
    if workload.cron is None:
        raise ValueError(f"{workload.key} is not a CronJob")
    pending = sorted({slot for slot in owned_due if slot not in runs})
    if workload.cron.concurrency_policy == "Allow":
        return CronDecision(start=tuple(pending))
    if not pending:
        return CronDecision()
    # Forbid and Replace keep one run at a time, so only the newest slot can start; a slot older than a run
    # already started elsewhere (its owner was late) must neither displace nor join it.
    *older, newest = pending
    running = tuple(sorted(slot for slot, state in runs.items() if state == State.RUNNING))
    if max(runs, default=newest) > newest or (workload.cron.concurrency_policy == "Forbid" and running):
        return CronDecision(skip=tuple(pending))
    stop = running if workload.cron.concurrency_policy == "Replace" else ()
    return CronDecision(start=(newest,), stop=stop, skip=tuple(older))


def history_to_prune(finished: Mapping[datetime, str], successful_limit: int, failed_limit: int) -> list[datetime]:
    """Finished runs beyond the newest ``successful_limit`` succeeded and ``failed_limit`` failed, oldest first."""
    prune: list[datetime] = []
    for state, limit in ((State.SUCCEEDED, successful_limit), (State.FAILED, failed_limit)):
        slots = sorted(slot for slot, have in finished.items() if have == state)
        prune += slots[: max(len(slots) - limit, 0)]
    return sorted(prune)


def next_fire_in(crons: Sequence[CronSpec], now: datetime) -> float | None:
    """Seconds from ``now`` to the earliest next run of any unsuspended CronJob; None if none will run."""
    now = _utc(now)
    fires = [fire for cron in crons if not cron.suspend and (fire := _schedule(cron).next_after(now)) is not None]
    return (min(fires) - now).total_seconds() if fires else None
