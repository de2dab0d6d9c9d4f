"""Registry credentials for pulls from the node's dockerconfigjson secrets (no registry is reached)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gitops.registryauth import BadPullSecret, pull_auth, registry_of
from gitops.secrets import redact


def put(secrets: Path, name: str, auths: object, namespace: str = "default") -> None:
    d = secrets / namespace / name
    d.mkdir(parents=True)
    (d / ".dockerconfigjson").write_text(auths if isinstance(auths, str) else json.dumps({"auths": auths}))


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("nginx", "docker.io"),
        ("library/nginx:1.27", "docker.io"),
        ("docker.io/library/nginx", "docker.io"),
        ("ghcr.io/org/app:v1", "ghcr.io"),
        ("localhost/app", "localhost"),
        ("localhost:5000/app@sha256:abc", "localhost:5000"),
        ("reg.example:5000/team/app", "reg.example:5000"),
    ],
)
def test_registry_of_an_image(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_the_first_listed_secret_with_the_images_registry_is_used(tmp_path: Path) -> None:
    put(tmp_path, "other", {"quay.io": {"auth": basic("q", "qq")}})
    put(tmp_path, "hub", {"https://index.docker.io/v1/": {"auth": basic("me", "pa:ss")}})
    put(tmp_path, "hub2", {"docker.io": {"username": "you", "password": "x"}})
    names = ("absent", "other", "hub", "hub2")
    assert pull_auth(tmp_path, "default", names, "nginx:1.27") == {"username": "me", "password": "pa:ss"}
    assert pull_auth(tmp_path, "default", names, "quay.io/a/b") == {"username": "q", "password": "qq"}
    assert pull_auth(tmp_path, "default", names, "ghcr.io/a/b") is None
    # Secrets are the workload's namespace's: another namespace sees none of them.
    assert pull_auth(tmp_path, "prod", names, "nginx:1.27") is None


def test_username_and_password_fields_and_ports(tmp_path: Path) -> None:
    put(tmp_path, "reg", {"reg.example:5000": {"username": "u", "password": "p", "email": "e@x"}})
    assert pull_auth(tmp_path, "default", ("reg",), "reg.example:5000/app") == {"username": "u", "password": "p"}
    assert pull_auth(tmp_path, "default", ("reg",), "reg.example/app") is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json s3cret", "is not JSON"),
        ('{"other": {}}', 'no "auths"'),
        (json.dumps({"auths": {"docker.io": {"auth": "!!!s3cret"}}}), "not base64"),
        (json.dumps({"auths": {"docker.io": {"auth": base64.b64encode(b"no-colon-s3cret").decode()}}}), "or auth"),
        (json.dumps({"auths": {"docker.io": {"identitytoken": "s3cret"}}}), "needs username and password"),
    ],
)
def test_a_broken_secret_is_named_never_shown(tmp_path: Path, content: str, words: str) -> None:
    put(tmp_path, "bad", content)
    with pytest.raises(BadPullSecret, match=words) as info:
        pull_auth(tmp_path, "default", ("bad",), "nginx")
    assert "imagePullSecret bad/.dockerconfigjson" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_registry_credentials_are_redacted_from_published_text(tmp_path: Path) -> None:
    put(tmp_path, "hub", {"docker.io": {"auth": basic("robot-user", "pull-pass-123")}, "q.io": {"password": "qpass99"}})
    token = basic("robot-user", "pull-pass-123")
    text = f"login robot-user pull-pass-123 {token} qpass99"
    assert redact(text, tmp_path) == "login *** *** *** ***"
