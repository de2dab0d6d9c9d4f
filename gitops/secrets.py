"""Node-local secrets: read from ``<secrets_dir>/<namespace>/<name>/<key>``, never from Git, never published.

A workload reads only its own namespace's directory: the namespace comes from the workload, not
from the reference, and a name or key that would leave that directory (``..``, ``/``, an absolute
path) is refused before anything is opened.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from gitops.model import SecretRef

# Values shorter than this are not redacted: masking "a" or "1" would garble every message.
MIN_REDACTED_LEN = 4
# A secrets store is small; reading more than this for redaction would be a misconfiguration.
MAX_SECRET_FILES = 1000
MAX_SECRET_BYTES = 64 * 1024
_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


class SecretMissing(Exception):
    """A referenced secret is not on this node (or its reference would leave its namespace's directory)."""


def secret_path(secrets_dir: Path, namespace: str, ref: SecretRef) -> Path:
    """Where ``ref`` is read for a workload in ``namespace``: its key's file, or its directory (no checks)."""
    directory = secrets_dir / namespace / ref.name
    return directory if ref.key is None else directory / ref.key


def _unsafe(part: str) -> bool:
    return part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part


def _label(ref: SecretRef) -> str:
    return ref.name if ref.key is None else f"{ref.name}/{ref.key}"


def read_secret_files(secrets_dir: Path, namespace: str, ref: SecretRef) -> dict[str, bytes]:
    """Raw content by key (``ref.key`` only, or every key); SecretMissing names the path, never a value."""
    path = secret_path(secrets_dir, namespace, ref)
    parts = (namespace, ref.name) if ref.key is None else (namespace, ref.name, ref.key)
    bad = [p for p in parts if _unsafe(p)]
    if bad:
        raise SecretMissing(
            f"secret {_label(ref)} refused: {bad[0]!r} would leave the namespace's secrets "
            f"directory (expected a file at {secrets_dir / namespace}/<name>/<key>)"
        )
    try:
        if ref.key is not None:
            return {ref.key: path.read_bytes()}
        # Only names a Kubernetes secret key could have: they become file and variable names.
        keys = sorted(
            p for p in path.iterdir() if _KEY.fullmatch(p.name) and not p.name.startswith(".") and p.is_file()
        )
        return {p.name: p.read_bytes() for p in keys[:MAX_SECRET_FILES]}
    except OSError as e:
        raise SecretMissing(f"secret {_label(ref)} not found at {path}") from e


def as_text(raw: bytes) -> str:
    """A secret's value as an environment variable carries it: decoded, trailing newline dropped."""
    return raw.decode(errors="replace").rstrip("\n")


def read_secret(secrets_dir: Path, namespace: str, ref: SecretRef) -> str:
    """The value of one secret key (trailing newline dropped); SecretMissing names the path, never a value."""
    return "".join(as_text(raw) for raw in read_secret_files(secrets_dir, namespace, ref).values())


def redact(text: str, secrets_dir: Path) -> str:
    """``text`` with every value of this node's secrets (every namespace) replaced by ``***``."""
    return redactor(secrets_dir)(text)


def redactor(secrets_dir: Path) -> Callable[[str], str]:
    """``redact`` for many texts: the secrets are read once, now."""
    values = sorted(_values(secrets_dir), key=len, reverse=True)

    def mask(text: str) -> str:
        for value in values:
            text = text.replace(value, "***")
        return text

    return mask


def _values(secrets_dir: Path) -> set[str]:
    values: set[str] = set()
    try:
        files = sorted(p for p in secrets_dir.glob("*/*/*") if p.is_file())[:MAX_SECRET_FILES]
    except OSError:
        return values
    for p in files:
        try:
            raw = p.read_bytes()[:MAX_SECRET_BYTES].decode(errors="replace")
        except OSError:
            continue
        for v in (raw, raw.rstrip("\n"), *raw.splitlines(), *_json_values(raw)):
            if len(v.strip()) >= MIN_REDACTED_LEN:
                values.add(v.strip())
    return values


def _json_values(raw: str) -> list[str]:
    """The strings inside a JSON secret (a registry's ``.dockerconfigjson``), ``auth`` tokens decoded too."""
    try:
        stack: list[object] = [json.loads(raw)]
    except ValueError:
        return []
    found: list[str] = []
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += item.values()
            token = item.get("auth")
            if isinstance(token, str):
                with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                    found += base64.b64decode(token, validate=True).decode().split(":", 1)
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str):
            found.append(item)
    return found
