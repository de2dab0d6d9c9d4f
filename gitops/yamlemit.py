"""Block-style YAML for JSON-like data (dicts, lists, strings, ints, bools), fast.

Status records are written every pass and every heartbeat; PyYAML's representer is pure
Python even under libyaml's emitter and took 200 ms for a record of 1,000 rows. This writes
the same block layout PyYAML does (lists not indented under their key) in a tenth of that:
a string is plain when it obviously reads back as that string, and otherwise JSON's
double-quoted form, which is valid YAML. Anything else (floats, strings with characters YAML
forbids in a stream) goes through PyYAML, so the output always loads back equal.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

# Plain only when no YAML 1.1 resolver can claim it: starts with a letter or /, no ':', '#', spaces...
_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./-]*\Z")
_WORDS = frozenset(
    w
    for base in ("yes", "no", "true", "false", "on", "off", "null", "y", "n")
    for w in (base, base.capitalize(), base.upper())
)
# What JSON leaves raw but a double-quoted YAML scalar may not hold: what PyYAML's reader refuses
# anywhere in a stream (its Reader.NON_PRINTABLE), YAML 1.1's other line breaks, a byte order mark.
_NOT_FOR_JSON = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(data: Mapping[str, Any]) -> str:
    """``data`` as block-style YAML that ``yaml.safe_load`` reads back equal."""
    out: list[str] = []
    _mapping(data, "", out)
    return "".join(out)


def _string(value: str) -> str:
    if _PLAIN.match(value) and value not in _WORDS:
        return value
    quoted = json.dumps(value, ensure_ascii=False)
    return _pyyaml(value) if _NOT_FOR_JSON.search(quoted) else quoted


# Keys and short values (namespaces, kinds, states) repeat on every row; long ones (messages,
# logs) are not kept.
_short_string = functools.lru_cache(maxsize=4096)(_string)
_SHORT = 80


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _short_string(value) if len(value) <= _SHORT else _string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return _pyyaml(value)


def _pyyaml(value: Any) -> str:
    text: str = yaml.dump(value, Dumper=_Dumper, width=1 << 30, allow_unicode=False)
    return text.removesuffix("\n...\n").removesuffix("\n")


def _mapping(data: Mapping[str, Any], indent: str, out: list[str], first: str | None = None) -> None:
    """Write ``data``'s entries at ``indent``; the first line starts with ``first`` instead (a list item's dash)."""
    for key, value in data.items():
        out.append(indent if first is None else first)
        first = None
        out.append(_scalar(key))
        _value(value, indent, out)


def _value(value: Any, indent: str, out: list[str]) -> None:
    """Write what follows ``key`` (whose line is open): an inline scalar or empty collection, or a block."""
    if isinstance(value, Mapping) and value:
        out.append(":\n")
        _mapping(value, indent + "  ", out)
    elif _is_list(value) and value:
        out.append(":\n")
        _sequence(value, indent, out)
    else:
        out.append(": ")
        out.append(_inline(value))
        out.append("\n")


def _sequence(items: Sequence[Any], indent: str, out: list[str]) -> None:
    for item in items:
        if isinstance(item, Mapping) and item:
            _mapping(item, indent + "  ", out, first=indent + "- ")
        elif _is_list(item) and item:
            out.append(indent + "-\n")
            _sequence(item, indent + "  ", out)
        else:
            out.append(indent + "- ")
            out.append(_inline(item))
            out.append("\n")


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if _is_list(value):
        return "[]"
    return _scalar(value)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)
