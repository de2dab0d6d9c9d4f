"""Registry credentials for pulls, from the node's ``kubernetes.io/dockerconfigjson`` secrets.

A pod's ``imagePullSecrets`` name secrets in the node's store (gitops/secrets.py); each holds
``<secrets_dir>/<namespace>/<name>/.dockerconfigjson``, the ``{"auths": {registry: {...}}}``
document ``kubectl create secret docker-registry`` writes. As the kubelet does, the first
listed secret with an entry for the image's registry is used, and a missing secret only means
a pull without it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from gitops.model import SecretRef
from gitops.secrets import SecretMissing, read_secret

DOCKER_CONFIG_KEY = ".dockerconfigjson"
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})


class BadPullSecret(Exception):
    """A pull secret that is not a readable dockerconfigjson; the message never holds its content."""


def registry_of(image: str) -> str:
    """The registry host of an image reference, as Docker resolves it (``docker.io`` when none is named)."""
    first, sep, _ = image.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        return DOCKER_HUB
    return first


def _host(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``reg.example:5000`` stays."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in _HUB_ALIASES else host


def pull_auth(secrets_dir: Path, namespace: str, names: tuple[str, ...], image: str) -> dict[str, str] | None:
    """``auth_config`` (username, password) for pulling ``image``, or None to pull anonymously."""
    registry = registry_of(image)
    for name in names:
        try:
            raw = read_secret(secrets_dir, namespace, SecretRef(name=name, key=DOCKER_CONFIG_KEY))
        except SecretMissing:
            continue
        entry = _auths(raw, name).get(registry)
        if entry is not None:
            return entry
    return None


def _auths(raw: str, name: str) -> dict[str, dict[str, str]]:
    """Registry host -> credentials of one secret."""
    where = f"imagePullSecret {name}/{DOCKER_CONFIG_KEY}"
    try:
        doc = json.loads(raw)
    except ValueError:
        raise BadPullSecret(f"{where} is not JSON") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise BadPullSecret(f'{where} has no "auths" mapping')
    out: dict[str, dict[str, str]] = {}
    for key, entry in auths.items():
        if isinstance(entry, dict):
            out.setdefault(_host(str(key)), _credentials(entry, f"{where}: {key}"))
    return out


def _credentials(entry: dict[str, object], where: str) -> dict[str, str]:
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str):
        return {"username": user, "password": password}
    token = entry.get("auth")
    if isinstance(token, str):
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise BadPullSecret(f"{where}: auth is not base64 of user:password") from None
        if sep:
            return {"username": user, "password": password}
    raise BadPullSecret(f"{where}: needs username and password, or auth")
