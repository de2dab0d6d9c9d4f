"""Tests of leaderless CronJob scheduling: fire times, slot ownership, concurrency policies, history."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pytest

from gitops.cronjobs import (
    MAX_DUE,
    CronDecision,
    decide,
    due_slots,
    history_to_prune,
    next_fire_in,
    run_name,
    slot_owner,
    trigger_for,
)
from gitops.model import CronSpec, Workload
from tests.builders import workload

NY = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(schedule: str, since: datetime, now: datetime, time_zone: str = "UTC") -> list[datetime]:
    return due_slots(CronSpec(schedule=schedule, time_zone=time_zone), since, now)


# --- fire times ---


def test_five_fields_fire_in_since_exclusive_now_inclusive() -> None:
    got = fires("*/15 * * * *", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 1, 0))
    assert got == [utc(2024, 1, 1, 0, m) for m in (15, 30, 45)] + [utc(2024, 1, 1, 1, 0)]
    assert all(slot.tzinfo is UTC for slot in got)


def test_six_fields_put_seconds_first() -> None:
    got = fires("*/20 5 * * * *", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 6))
    assert got == [utc(2024, 1, 1, 0, 5, s) for s in (0, 20, 40)]


@pytest.mark.parametrize(
    ("macro", "since", "expected"),
    [
        ("@yearly", utc(2024, 6, 1), [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@annually", utc(2024, 6, 1), [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@monthly", utc(2025, 11, 15), [utc(2025, 12, 1), utc(2026, 1, 1)]),
        ("@weekly", utc(2025, 12, 20), [utc(2025, 12, 21), utc(2025, 12, 28)]),  # Sundays
        ("@daily", utc(2025, 12, 30, 12), [utc(2025, 12, 31), utc(2026, 1, 1)]),
        ("@midnight", utc(2025, 12, 30, 12), [utc(2025, 12, 31), utc(2026, 1, 1)]),
        ("@hourly", utc(2025, 12, 31, 22, 30), [utc(2025, 12, 31, 23), utc(2026, 1, 1, 0)]),
    ],
)
def test_macros(macro: str, since: datetime, expected: list[datetime]) -> None:
    assert fires(macro, since, utc(2026, 1, 1, 0, 30)) == expected


def test_day_of_week_counts_from_sunday_as_cron_does() -> None:
    # 2024-01-01 is a Monday.
    mondays = fires("0 9 * * 1", utc(2024, 1, 1), utc(2024, 1, 31))
    assert [s.day for s in mondays] == [1, 8, 15, 22, 29]
    assert all(s.weekday() == 0 and s.hour == 9 for s in mondays)
    assert [s.day for s in fires("0 0 * * 0", utc(2024, 1, 1), utc(2024, 1, 31))] == [7, 14, 21, 28]
    assert [s.day for s in fires("0 0 * * sun", utc(2024, 1, 1), utc(2024, 1, 31))] == [7, 14, 21, 28]
    assert [s.day for s in fires("0 0 * * 6", utc(2024, 1, 1), utc(2024, 1, 14))] == [6, 13]
    # A range across the numbering boundary, a step, a list with names, and '?'.
    assert [s.day for s in fires("0 0 * * 0-2", utc(2024, 1, 1), utc(2024, 1, 10))] == [2, 7, 8, 9]
    assert [s.day for s in fires("0 0 * * */3", utc(2023, 12, 31), utc(2024, 1, 10))] == [3, 6, 7, 10]
    assert [s.day for s in fires("0 0 * * MON,wed-4", utc(2024, 1, 1), utc(2024, 1, 8))] == [3, 4, 8]
    assert [s.day for s in fires("0 0 ? * 5", utc(2024, 1, 1), utc(2024, 1, 14))] == [5, 12]


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either() -> None:
    # As in cron and Kubernetes: the 13th, and every Friday.
    got = fires("0 0 13 * 5", utc(2024, 1, 1), utc(2024, 1, 31))
    assert [s.day for s in got] == [5, 12, 13, 19, 26]
    # With one of them '*', both must hold (here: only Fridays in January).
    assert [s.day for s in fires("0 0 * 1 5", utc(2024, 1, 1), utc(2024, 2, 10))] == [5, 12, 19, 26]


def test_months_by_name_and_number() -> None:
    got = fires("0 0 1 jan-3,JUN *", utc(2024, 1, 1), utc(2024, 12, 31))
    assert [s.month for s in got] == [2, 3, 6]


def test_time_zone_applies_and_results_are_utc() -> None:
    got = fires("0 9 * * *", utc(2024, 7, 1), utc(2024, 7, 2, 23), time_zone="Europe/Berlin")
    assert got == [utc(2024, 7, 1, 7), utc(2024, 7, 2, 7)]


def test_new_york_spring_forward() -> None:
    # 2024-03-10 02:00 EST jumps to 03:00 EDT: a 02:30 job runs once, right after the jump (at 03:30 EDT).
    got = fires("30 2 * * *", utc(2024, 3, 9), utc(2024, 3, 12), time_zone="America/New_York")
    assert [s.astimezone(NY).strftime("%d %H:%M %Z") for s in got] == ["09 02:30 EST", "10 03:30 EDT", "11 02:30 EDT"]
    # Frequent jobs just follow real time: no 02:xx exists that day.
    got = fires("*/30 * * * *", utc(2024, 3, 10, 6), utc(2024, 3, 10, 7, 30), time_zone="America/New_York")
    assert [s.astimezone(NY).strftime("%H:%M") for s in got] == ["01:30", "03:00", "03:30"]


def test_new_york_fall_back() -> None:
    # 2024-11-03 02:00 EDT falls back to 01:00 EST: a fixed-time 01:30 job runs once, not at both 01:30s.
    got = fires("30 1 * * *", utc(2024, 11, 2), utc(2024, 11, 5), time_zone="America/New_York")
    assert [s.astimezone(NY).strftime("%d %H:%M %Z") for s in got] == ["02 01:30 EDT", "03 01:30 EDT", "04 01:30 EST"]
    # An every-hour job runs in both passes through the repeated hour.
    got = fires("30 * * * *", utc(2024, 11, 3, 4), utc(2024, 11, 3, 7), time_zone="America/New_York")
    assert [s.astimezone(NY).strftime("%H:%M %Z") for s in got] == ["00:30 EDT", "01:30 EDT", "01:30 EST"]
    assert got == [utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30)]


def test_starting_deadline_drops_slots_too_old_to_start() -> None:
    cron = CronSpec(schedule="* * * * *", starting_deadline_s=150)
    assert due_slots(cron, utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 10, 30)) == [
        utc(2024, 1, 1, 0, 8),
        utc(2024, 1, 1, 0, 9),
        utc(2024, 1, 1, 0, 10),
    ]
    # As in Kubernetes, a run exactly startingDeadlineSeconds late still starts; a microsecond later it does not.
    assert due_slots(cron, utc(2024, 1, 1), utc(2024, 1, 1, 0, 10, 30, 1))[0] == utc(2024, 1, 1, 0, 9)
    assert due_slots(cron, utc(2024, 1, 1, 0, 9, 30), utc(2024, 1, 1, 0, 10, 30)) == [utc(2024, 1, 1, 0, 10)]


def test_suspended_cronjob_has_nothing_due_and_no_next_fire() -> None:
    cron = CronSpec(schedule="* * * * *", suspend=True)
    assert due_slots(cron, utc(2024, 1, 1), utc(2024, 1, 2)) == []
    assert next_fire_in([cron], utc(2024, 1, 1)) is None


def test_long_outage_keeps_only_the_newest_slots_quickly() -> None:
    now = utc(2024, 2, 1, 0, 0, 5)
    got = due_slots(CronSpec(schedule="* * * * * *"), utc(2024, 1, 1), now)  # 2.7 million missed runs
    assert got == [now - timedelta(seconds=MAX_DUE - 1 - i) for i in range(MAX_DUE)]
    assert due_slots(CronSpec(schedule="* * * * *"), utc(2024, 1, 1), utc(2024, 1, 2), limit=1) == [utc(2024, 1, 2)]
    assert len(due_slots(CronSpec(schedule="*/5 * * * *"), utc(2024, 1, 1), utc(2024, 1, 1, 10))) == MAX_DUE


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        due_slots(CronSpec(schedule="* * * * *"), datetime(2024, 1, 1), utc(2024, 1, 2))


def test_trigger_for_is_an_apscheduler_trigger() -> None:
    trigger = trigger_for(CronSpec(schedule="0 9 * * 1", time_zone="America/New_York"))
    fire = trigger.get_next_fire_time(None, utc(2024, 1, 1))
    assert fire.astimezone(NY) == datetime(2024, 1, 1, 9, tzinfo=NY)


def test_next_fire_in_is_the_earliest_across_cronjobs() -> None:
    crons = [CronSpec(schedule="0 * * * *"), CronSpec(schedule="*/10 * * * * *"), CronSpec(schedule="0 30 2 30 2 *")]
    assert next_fire_in(crons, utc(2024, 1, 1, 0, 0, 3, 500_000)) == 6.5
    assert next_fire_in(crons[:1], utc(2024, 1, 1, 0, 0)) == 3600.0  # strictly after now: now itself is due
    assert next_fire_in([CronSpec(schedule="0 0 30 2 *")], utc(2024, 1, 1)) is None  # never: February 30th
    assert next_fire_in([], utc(2024, 1, 1)) is None


# --- slot ownership ---

NODES: list[tuple[str, dict[str, str]]] = [("a", {"zone": "x"}), ("b", {"zone": "y"}), ("c", {"zone": "x"})]
SLOTS = [utc(2024, 1, 1) + timedelta(minutes=i) for i in range(3000)]
NODES_ABCD: list[tuple[str, dict[str, str]]] = [(name, {}) for name in "abcd"]


def test_every_slot_has_exactly_one_owner_among_the_nodes_whatever_the_order() -> None:
    for slot in SLOTS[:300]:
        owner = slot_owner("default/CronJob/backup", slot, NODES, {})
        assert owner in {"a", "b", "c"}
        assert slot_owner("default/CronJob/backup", slot, NODES[::-1], {}) == owner
        assert slot_owner("default/CronJob/backup", slot, [NODES[1], NODES[2], NODES[0]], {}) == owner
        # The same instant written in another zone is the same slot.
        assert slot_owner("default/CronJob/backup", slot.astimezone(NY), NODES, {}) == owner


def test_owners_spread_evenly_and_differ_per_cronjob() -> None:
    counts = Counter(slot_owner("default/CronJob/backup", slot, NODES, {}) for slot in SLOTS)
    assert set(counts) == {"a", "b", "c"}
    assert all(900 <= n <= 1100 for n in counts.values()), counts
    other = [slot_owner("default/CronJob/report", slot, NODES, {}) for slot in SLOTS[:300]]
    assert other != [slot_owner("default/CronJob/backup", slot, NODES, {}) for slot in SLOTS[:300]]


def test_a_node_leaving_moves_only_its_own_slots() -> None:
    before = {slot: slot_owner("k", slot, NODES, {}) for slot in SLOTS[:600]}
    after = {slot: slot_owner("k", slot, NODES[:2], {}) for slot in SLOTS[:600]}
    assert all(after[s] == before[s] for s in before if before[s] != "c")


def test_node_selector_limits_owners() -> None:
    owners = {slot_owner("k", slot, NODES, {"zone": "x"}) for slot in SLOTS[:300]}
    assert owners == {"a", "c"}
    assert slot_owner("k", SLOTS[0], NODES, {"zone": "z"}) is None
    assert slot_owner("k", SLOTS[0], [], {}) is None


def test_owner_is_the_same_in_processes_with_different_hash_seeds() -> None:
    script = (
        "from datetime import datetime, timedelta, UTC\n"
        "from gitops.cronjobs import slot_owner\n"
        "nodes = [('a', {}), ('b', {}), ('c', {}), ('d', {})]\n"
        "t = datetime(2024, 1, 1, tzinfo=UTC)\n"
        "owners = (slot_owner('default/CronJob/x', t + timedelta(minutes=i), nodes, {}) for i in range(200))\n"
        "print(''.join(owner or '-' for owner in owners))\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    here = "".join(slot_owner("default/CronJob/x", slot, NODES_ABCD, {}) or "-" for slot in SLOTS[:200])
    assert outputs.pop().strip() == here


# --- run names ---


def test_run_name_is_name_and_epoch_seconds() -> None:
    assert run_name("backup", utc(2024, 1, 1, 0, 0, 30)) == "backup-1704067230"


@pytest.mark.parametrize("name", ["a" * 63, "x" * 52 + "-" + "y" * 10, "b"])
def test_run_name_is_a_dns_label_of_at_most_63(name: str) -> None:
    got = run_name(name, utc(2024, 1, 1, 0, 0, 30))
    assert len(got) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", got)
    assert got.endswith("-1704067230")
    assert "--" not in got


def test_run_names_differ_per_slot() -> None:
    assert run_name("a" * 63, utc(2024, 1, 1, 0, 0, 1)) != run_name("a" * 63, utc(2024, 1, 1, 0, 0, 2))


# --- concurrency policies ---

T = [utc(2024, 1, 1, 0, m) for m in range(6)]
# A CronJob every minute, per concurrency policy.
CRONJOB: dict[str, Workload] = {
    policy: workload("backup", kind="CronJob", cron=CronSpec(schedule="* * * * *", concurrency_policy=policy))
    for policy in ("Allow", "Forbid", "Replace")
}


def test_allow_starts_every_owned_slot_not_yet_run() -> None:
    runs = {T[0]: "running", T[1]: "succeeded"}
    assert decide(CRONJOB["Allow"], runs, [T[3], T[1], T[2]]) == CronDecision(start=(T[2], T[3]))


def test_forbid_skips_while_any_run_is_running() -> None:
    assert decide(CRONJOB["Forbid"], {T[0]: "running"}, [T[2]]) == CronDecision(skip=(T[2],))


def test_forbid_starts_only_the_newest_when_nothing_runs() -> None:
    runs = {T[0]: "failed"}
    assert decide(CRONJOB["Forbid"], runs, [T[1], T[2]]) == CronDecision(start=(T[2],), skip=(T[1],))


def test_replace_starts_and_stops_the_running_runs() -> None:
    runs = {T[0]: "running", T[1]: "running", T[2]: "succeeded"}
    got = decide(CRONJOB["Replace"], runs, [T[3]])
    assert got == CronDecision(start=(T[3],), stop=(T[0], T[1]))


@pytest.mark.parametrize("policy", ["Forbid", "Replace"])
def test_late_owner_does_not_displace_a_newer_run(policy: Literal["Forbid", "Replace"]) -> None:
    assert decide(CRONJOB[policy], {T[4]: "succeeded"}, [T[3]]) == CronDecision(skip=(T[3],))
    assert decide(CRONJOB[policy], {T[4]: "running"}, [T[3]]) == CronDecision(skip=(T[3],))


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_nothing_owned_means_nothing_to_do(policy: Literal["Allow", "Forbid", "Replace"]) -> None:
    assert decide(CRONJOB[policy], {T[0]: "running"}, []) == CronDecision()
    assert decide(CRONJOB[policy], {T[0]: "running"}, [T[0]]) == CronDecision()


def test_decide_refuses_a_workload_without_schedule() -> None:
    with pytest.raises(ValueError, match="not a CronJob"):
        decide(CRONJOB["Allow"].model_copy(update={"cron": None}), {}, [T[0]])


# --- history ---


def test_history_keeps_the_newest_of_each_outcome() -> None:
    finished = {T[0]: "succeeded", T[1]: "failed", T[2]: "succeeded", T[3]: "failed", T[4]: "succeeded"}
    assert history_to_prune(finished, successful_limit=2, failed_limit=1) == [T[0], T[1]]
    assert history_to_prune(finished, successful_limit=0, failed_limit=0) == T[:5]
    assert history_to_prune(finished, successful_limit=5, failed_limit=5) == []


def test_history_never_prunes_running_runs() -> None:
    assert history_to_prune({T[0]: "running", T[1]: "running"}, 0, 0) == []
