"""Node-local secrets: read from ``<secrets_dir>/<name>/<key>``, never from Git, never published."""

from __future__ import annotations

from pathlib import Path

from gitops.model import SecretRef

# Values shorter than this are not redacted: masking "a" or "1" would garble every message.
MIN_REDACTED_LEN = 4
# A secrets store is small; reading more than this for redaction would be a misconfiguration.
MAX_SECRET_FILES = 1000
MAX_SECRET_BYTES = 64 * 1024


class SecretMissing(Exception):
    """A referenced secret is not on this node."""


def read_secret(secrets_dir: Path, ref: SecretRef) -> str:
    """The value of one secret (trailing newline dropped); SecretMissing names the path, never a value."""
    path = secrets_dir / ref.name / ref.key
    try:
        return path.read_text().rstrip("\n")
    except OSError as e:
        raise SecretMissing(f"secret {ref.name}/{ref.key} not found at {path}") from e


def redact(text: str, secrets_dir: Path) -> str:
    """``text`` with every value of this node's secrets replaced by ``***``."""
    if not text:
        return text
    for value in sorted(_values(secrets_dir), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _values(secrets_dir: Path) -> set[str]:
    values: set[str] = set()
    try:
        files = sorted(p for p in secrets_dir.glob("*/*") if p.is_file())[:MAX_SECRET_FILES]
    except OSError:
        return values
    for p in files:
        try:
            raw = p.read_bytes()[:MAX_SECRET_BYTES].decode(errors="replace")
        except OSError:
            continue
        for v in (raw, raw.rstrip("\n"), *raw.splitlines()):
            if len(v.strip()) >= MIN_REDACTED_LEN:
                values.add(v.strip())
    return values
