"""Name rules: workload names end up inside Docker container names, so they must be DNS labels."""

from __future__ import annotations

import hashlib
import re

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_PREFIX = re.compile(r"[a-z0-9][-a-z0-9]*\Z")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
MAX_LABEL = 63
# Kubernetes' generateName suffix: five characters of this alphabet (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LEN = 5


def dns_label(value: str) -> str:
    """``value`` if it is an RFC 1123 label (lowercase, digits, '-', at most 63); else ValueError."""
    if len(value) <= MAX_LABEL and _LABEL.match(value):
        return value
    suggestion = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:MAX_LABEL].rstrip("-")
    example = f", e.g. '{suggestion}'" if suggestion and suggestion != value else ""
    raise ValueError(
        f"'{value[:80]}' is not a valid name: use at most {MAX_LABEL} lowercase letters, digits and '-', "
        f"starting and ending with a letter or digit (RFC 1123 label){example}"
    )


def port_name(value: str) -> str:
    """``value`` if it is an IANA service name as Kubernetes port names must be; else ValueError."""
    if len(value) <= 15 and _PORT_NAME.match(value) and "--" not in value and re.search("[a-z]", value):
        return value
    raise ValueError(
        f"port name '{value[:80]}' must be at most 15 lowercase letters, digits and single '-', "
        "with at least one letter"
    )


def env_name(value: str) -> str:
    """``value`` if Docker can pass it as an environment variable name; else ValueError."""
    if value and "=" not in value and value.isprintable():
        return value
    raise ValueError(f"environment variable name '{value[:80]}' must be non-empty, printable, without '='")


def name_prefix(value: str) -> str:
    """``value`` if a generated name can start with it (``generateName``); else ValueError."""
    if _PREFIX.match(value):
        return value
    raise ValueError(
        f"generateName '{value[:80]}' must be lowercase letters, digits and '-', starting with a letter or digit"
    )


def generated_name(prefix: str, seed: str) -> str:
    """``metadata.generateName`` made deterministic: the prefix (cut to fit) and five characters hashed from ``seed``.

    ``seed`` names the document (file path and position), not its content, so editing the
    document keeps the name, and every node derives the same one.
    """
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    suffix = ""
    for _ in range(_SUFFIX_LEN):
        number, digit = divmod(number, len(_SUFFIX_ALPHABET))
        suffix += _SUFFIX_ALPHABET[digit]
    return prefix[: MAX_LABEL - _SUFFIX_LEN] + suffix
