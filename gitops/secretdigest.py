"""Keyed digests of node-local secrets in spec hashes, so a change of a secret's content rolls its users.

The key is ``<secrets_dir>/.digest-key``, the same on every node (the operator's duty, as the
secrets themselves are). Every node then computes the same spec hash from the same secrets; the
hash carries an HMAC of the content, never the value or a plain hash of it (a plain hash of a
short password is a dictionary lookup away). Without the key file, or for a secret missing on
this node, no digest is added: the spec hash is the one the workload has without this feature,
and placement, which never reads spec hashes, is unaffected either way.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from gitops.model import EnvFrom, EnvVar, ManifestSet, SecretRef, VolumeFile
from gitops.references import Rewrite, uses_references
from gitops.secrets import SecretMissing, read_secret_files

log = logging.getLogger(__name__)

DIGEST_KEY_FILE = ".digest-key"
_MIN_KEY_BYTES = 16


def digest_key(secrets_dir: Path) -> bytes | None:
    """The shared digest key, or None (with a warning) when it is absent or too short to be one."""
    try:
        key = (secrets_dir / DIGEST_KEY_FILE).read_bytes().strip()
    except OSError:
        return None
    if len(key) < _MIN_KEY_BYTES:
        log.warning("%s is shorter than %d bytes: secret changes do not roll", DIGEST_KEY_FILE, _MIN_KEY_BYTES)
        return None
    return key


def secret_digest(key: bytes, namespace: str, ref: SecretRef, content: dict[str, bytes]) -> str:
    """HMAC-SHA256 over the secret's identity and every (key, content) pair, in key order."""
    mac = hmac.new(key, f"{namespace}/{ref.name}".encode(), hashlib.sha256)
    for name in sorted(content):
        data = content[name]
        mac.update(b"\0" + name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return mac.hexdigest()


def with_secret_digests(mset: ManifestSet, secrets_dir: Path) -> ManifestSet:
    """``mset`` with every secret reference stamped with this node's keyed digest of its content."""
    key = digest_key(secrets_dir)
    if key is None:
        return mset
    workloads = []
    for w in mset.workloads:
        if not uses_references(w.pod):
            workloads.append(w)
            continue

        def stamp(ref: SecretRef, namespace: str = w.namespace) -> SecretRef:
            try:
                content = read_secret_files(secrets_dir, namespace, ref)
            except SecretMissing:
                return ref  # the replica fails with the reason when it is run
            return ref.model_copy(update={"digest": secret_digest(key, namespace, ref, content)})

        pod = _stamper(stamp).pod(w.pod)
        workloads.append(w if pod is w.pod else w.model_copy(update={"pod": pod}))
    return mset.model_copy(update={"workloads": tuple(workloads)})


_WithSecret = TypeVar("_WithSecret", EnvVar, EnvFrom, VolumeFile)


def _stamper(stamp: Callable[[SecretRef], SecretRef]) -> Rewrite:
    def stamped(item: _WithSecret) -> Iterable[_WithSecret]:
        return (item if item.secret is None else item.model_copy(update={"secret": stamp(item.secret)}),)

    return Rewrite(env=stamped, env_from=stamped, file=stamped)
