"""Kubernetes ``$(VAR)`` references in command, args and env values, expanded as the kubelet does."""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$(?:\$|\(([^)]*)\))")


class SecretReference(ValueError):
    """A reference to a variable whose value is a node-local secret, unknown when parsing."""


def expand(text: str, values: Mapping[str, str], secrets: frozenset[str]) -> str:
    """``text`` with ``$(NAME)`` replaced from ``values``; ``$$`` escapes; unknown names stay as written."""
    return _substitute(text, values, secrets, escaped=False)


def template(text: str, values: Mapping[str, str], secrets: frozenset[str]) -> str:
    """``text`` with the references known now expanded, and escaped so that ``expand`` on the node,
    given the values only the node knows, yields what the kubelet would (unknown names stay as written)."""
    return _substitute(text, values, secrets, escaped=True)


def refers_to(text: str, names: frozenset[str] | set[str]) -> bool:
    """Whether ``text`` holds a ``$(NAME)`` reference to one of ``names``."""
    return "$" in text and any(m.group(1) in names for m in _REFERENCE.finditer(text))


def _substitute(text: str, values: Mapping[str, str], secrets: frozenset[str], escaped: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$$" if escaped else "$"
        if name in secrets:
            raise SecretReference(name)
        if name not in values:
            return match.group(0)
        return values[name].replace("$", "$$") if escaped else values[name]

    return _REFERENCE.sub(replace, text) if "$" in text else text
