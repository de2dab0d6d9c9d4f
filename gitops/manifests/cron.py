"""CronJob schedules: five cron fields, or six with seconds first (a gitops extension)."""

from __future__ import annotations

import re
import zoneinfo

MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (field name, lowest, highest, names for values starting at lowest, '?' allowed)
_Field = tuple[str, int, int, tuple[str, ...], bool]
_FIELDS: tuple[_Field, ...] = (
    ("minute", 0, 59, (), False),
    ("hour", 0, 23, (), False),
    ("day of month", 1, 31, (), True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
)
_SECONDS: _Field = ("second", 0, 59, (), False)
_TERM = re.compile(r"(\*|\?|\w+)(?:-(\w+))?(?:/(\d+))?\Z")


def validate_schedule(schedule: str) -> str:
    """``schedule`` if it is a valid cron schedule; else ValueError saying which field is wrong."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise ValueError("a time zone inside the schedule is not allowed; set spec.timeZone instead")
    if text.startswith("@"):
        if text in MACROS:
            return text
        raise ValueError(f"'{text}' is not one of {', '.join(sorted(MACROS))}")
    parts = text.split()
    if len(parts) == 5:
        fields = _FIELDS
    elif len(parts) == 6:
        fields = (_SECONDS, *_FIELDS)
    else:
        raise ValueError(
            f"'{text}' has {len(parts)} fields; write 5 (minute hour day-of-month month day-of-week) "
            "or 6 with seconds first"
        )
    for part, spec in zip(parts, fields, strict=True):
        for term in part.split(","):
            _check_term(term, *spec)
    return text


def _check_term(term: str, name: str, low: int, high: int, names: tuple[str, ...], question: bool) -> None:
    match = _TERM.match(term)
    if match is None:
        raise ValueError(f"{name} field '{term}' is not a value, range, list or step")
    start, end, step = match.groups()
    if start == "?" and not question:
        raise ValueError(f"'?' is only allowed in the day-of-month and day-of-week fields, not {name}")
    if start in ("*", "?"):
        if end is not None:
            raise ValueError(f"{name} field '{term}': '*' cannot start a range")
    else:
        first = _value(start, name, low, high, names)
        if end is not None and _value(end, name, low, high, names) < first:
            raise ValueError(f"{name} field '{term}': the range runs backwards")
    if step is not None and not 1 <= int(step) <= high - low + 1:
        raise ValueError(f"{name} field '{term}': step must be between 1 and {high - low + 1}")


def _value(token: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.lower() in names:
        return low + names.index(token.lower())
    if token.isdigit() and low <= int(token) <= high:
        return int(token)
    raise ValueError(f"{name} '{token}' is out of range {low}-{high}")


def validate_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone known to this system; else ValueError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name[:80]}' is not a known IANA time zone, e.g. 'Etc/UTC' or 'Europe/Berlin'") from None
    return name
