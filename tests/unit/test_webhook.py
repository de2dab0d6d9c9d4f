"""Push webhooks: real forge payloads signed as each forge signs them, and fuzzed requests that must never trigger."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitops.config import Config, WebhookConfig
from gitops.daemon import Daemon
from gitops.gpu import DeclaredInventory
from gitops.reconcile.reconciler import Reconciler
from gitops.serve import HttpEndpoint, Request
from gitops.webhook import Webhook, check
from tests.fakes import FakeRuntime

SECRET = b"It's a Secret to Everybody"
PATH = "/hooks/push"

# Trimmed from the forges' documented push payloads: the fields each sends around "ref".
GITHUB_PUSH: dict[str, Any] = {
    "ref": "refs/heads/main",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5",
    "repository": {"id": 186853002, "name": "cluster", "full_name": "octo-org/cluster", "private": True},
    "pusher": {"name": "octocat", "email": "octocat@github.com"},
    "created": False,
    "deleted": False,
    "forced": False,
    "commits": [{"id": "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5", "message": "scale web", "distinct": True}],
}
GITEA_PUSH: dict[str, Any] = {
    "ref": "refs/heads/main",
    "before": "28e1879d029cb852e4844d9c718537df08844e03",
    "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
    "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
    "commits": [{"id": "bffeb74224043ba2feb48d137756c8a9331c449a", "message": "Webhooks Yay!"}],
    "repository": {"id": 140, "name": "cluster", "full_name": "gitea/cluster"},
    "pusher": {"id": 1, "login": "gitea"},
    "sender": {"id": 1, "login": "gitea"},
}
GITLAB_PUSH: dict[str, Any] = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/main",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_username": "jsmith",
    "project_id": 15,
    "project": {"id": 15, "name": "cluster", "path_with_namespace": "ops/cluster", "default_branch": "main"},
    "commits": [{"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "scale web"}],
    "total_commits_count": 1,
}


def github(body: bytes, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": f"sha256={sig}",
    }


def gitea(body: bytes, secret: bytes = SECRET, forgejo: bool = False) -> dict[str, str]:
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    name = "Forgejo" if forgejo else "Gitea"
    return {
        "Content-Type": "application/json",
        f"X-{name}-Event": "push",
        f"X-{name}-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        f"X-{name}-Signature": sig,
        # Gitea also sends GitHub's event header (and, since 1.19, its signature header: left out here).
        "X-GitHub-Event": "push",
    }


def gitlab(token: bytes = SECRET, event: str = "Push Hook") -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": token.decode()}


def post(headers: dict[str, str], body: bytes, path: str = PATH, method: str = "POST") -> Request:
    return Request(method, path, headers, body)


def body(payload: dict[str, Any], ref: str | None = None) -> bytes:
    return json.dumps({**payload, "ref": ref} if ref else payload).encode()


@pytest.mark.parametrize(
    "request_",
    [
        post(github(body(GITHUB_PUSH)), body(GITHUB_PUSH)),
        post(gitea(body(GITEA_PUSH)), body(GITEA_PUSH)),
        post(gitea(body(GITEA_PUSH), forgejo=True), body(GITEA_PUSH)),
        post(gitlab(), body(GITLAB_PUSH)),
    ],
    ids=["github", "gitea", "forgejo", "gitlab"],
)
def test_a_signed_push_to_the_branch_triggers(request_: Request) -> None:
    assert check(request_, PATH, SECRET, "main").trigger


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (post(github(b"{}", event="ping"), b"{}"), 200),
        # Signed, but another branch or a tag: acknowledged (GitLab disables hooks that answer 4xx), ignored.
        (post(github(body(GITHUB_PUSH, "refs/heads/dev")), body(GITHUB_PUSH, "refs/heads/dev")), 202),
        (post(gitlab(), body(GITLAB_PUSH, "refs/tags/v1")), 202),
        (post(github(body(GITHUB_PUSH), event="issues"), body(GITHUB_PUSH)), 400),
        (post(gitlab(event="Tag Push Hook"), body(GITLAB_PUSH)), 400),
        (post({**github(b"payload=x"), "Content-Type": "application/x-www-form-urlencoded"}, b"payload=x"), 415),
        (post(github(b"[1, 2]"), b"[1, 2]"), 400),
        (post(github(b"{"), b"{"), 400),
        # Bad or missing credentials: nothing in the body is read.
        (post(github(body(GITHUB_PUSH), secret=b"wrong"), body(GITHUB_PUSH)), 401),
        (post(github(body(GITHUB_PUSH)), body(GITHUB_PUSH) + b" "), 401),
        (post(gitea(body(GITEA_PUSH), secret=b"wrong"), body(GITEA_PUSH)), 401),
        (post(gitlab(token=b"wrong"), body(GITLAB_PUSH)), 401),
        (post({"X-GitHub-Event": "push", "Content-Type": "application/json"}, body(GITHUB_PUSH)), 401),
        (post(gitlab(), body(GITLAB_PUSH), path="/other"), 404),
        (post(gitlab(), body(GITLAB_PUSH), method="GET"), 405),
    ],
)
def test_everything_else_triggers_nothing(request_: Request, status: int) -> None:
    verdict = check(request_, PATH, SECRET, "main")
    assert (verdict.status, verdict.trigger) == (status, False), verdict.message


HEADER_NAMES = st.sampled_from(
    [
        "X-Hub-Signature-256",
        "X-Gitea-Signature",
        "X-Forgejo-Signature",
        "X-Gitlab-Token",
        "X-GitHub-Event",
        "X-Gitea-Event",
        "X-Gitlab-Event",
        "Content-Type",
        "x-hub-signature-256",
        "X-Other",
    ]
)
# Header values as http.server hands them over: any text, latin-1 decoded bytes included.
HEADER_VALUES = st.one_of(
    st.sampled_from(["push", "ping", "Push Hook", "application/json", "sha256=", "sha256=" + "0" * 64, ""]),
    st.text(max_size=80),
)
BODIES = st.one_of(
    st.binary(max_size=512),
    st.sampled_from([body(GITHUB_PUSH), body(GITLAB_PUSH), b"{}", b"null", b"[" * 5000 + b"]" * 5000]),
    st.builds(
        lambda ref: json.dumps({"ref": ref}).encode(), st.one_of(st.text(max_size=30), st.just("refs/heads/main"))
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6),
    raw=BODIES,
    method=st.sampled_from(["POST", "GET", "PUT"]),
    path=st.sampled_from([PATH, PATH + "/", "/", "/hooks/PUSH"]),
)
def test_fuzzed_requests_without_the_secret_never_trigger(
    headers: dict[str, str], raw: bytes, method: str, path: str
) -> None:
    fired: list[bool] = []
    response = Webhook(PATH, SECRET, "main", lambda: fired.append(True)).serve(Request(method, path, headers, raw))
    assert response.status >= 400 and not fired


@settings(max_examples=300, deadline=None)
@given(raw=BODIES, event=HEADER_VALUES, content_type=st.one_of(st.none(), HEADER_VALUES))
def test_signed_requests_trigger_only_for_a_json_push_to_the_branch(
    raw: bytes, event: str, content_type: str | None
) -> None:
    headers = {**github(raw, event=event)}
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    verdict = check(post(headers, raw), PATH, SECRET, "main")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        payload = None
    json_ok = not content_type or "application/json" in content_type  # none or empty: taken as JSON
    # The event header here is GitHub's, where a push is "push" (GitLab's "Push Hook" is not one).
    push = event == "push" and json_ok and isinstance(payload, dict) and payload.get("ref") == "refs/heads/main"
    assert verdict.trigger == push
    assert verdict.status in (200, 202, 400, 415)


@pytest.fixture
def served() -> Iterator[tuple[HttpEndpoint, list[bool]]]:
    fired: list[bool] = []
    http = HttpEndpoint(("127.0.0.1", 0), Webhook(PATH, SECRET, "main", lambda: fired.append(True)).serve, "webhook")
    yield http, fired
    http.close()


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: s.recv(65536), b""))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(max_size=300), tail=st.binary(max_size=300))
def test_garbage_on_the_wire_never_triggers(served: tuple[HttpEndpoint, list[bool]], head: bytes, tail: bytes) -> None:
    http, fired = served
    answer = exchange(http.port, b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + head + b"\r\n\r\n" + tail)
    assert not answer.startswith(b"HTTP/1.0 2") and not fired


def test_a_signed_push_over_http_triggers(served: tuple[HttpEndpoint, list[bool]]) -> None:
    http, fired = served
    raw = body(GITHUB_PUSH)
    head = "".join(f"{k}: {v}\r\n" for k, v in github(raw).items())
    answer = exchange(
        http.port, f"POST {PATH} HTTP/1.1\r\nHost: h\r\n{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw
    )
    assert answer.startswith(b"HTTP/1.0 200") and fired == [True]


def test_the_daemon_refuses_to_start_on_an_unusable_webhook_config(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    secret = tmp_path / "secret"
    cases = {"": "is empty", "s3cret": f"webhook cannot listen on 127.0.0.1:{port}"}
    rec = Reconciler(Config(repo=str(tmp_path), state_dir=tmp_path / "state"), DeclaredInventory([]), FakeRuntime())
    try:
        for content, why in cases.items():
            secret.write_text(content + "\n")
            cfg = Config(webhook=WebhookConfig(address=f"127.0.0.1:{port}", secret_file=secret))
            with pytest.raises((OSError, ValueError), match=why):
                Daemon(cfg, rec)._endpoints()
        cfg = Config(webhook=WebhookConfig(address=":0", secret_file=tmp_path / "missing"))
        with pytest.raises(OSError, match=r"webhook\.secret_file"):
            Daemon(cfg, rec)._endpoints()
    finally:
        busy.close()
        rec.close()
