"""Push webhooks (docs/operations.md, "Webhooks"): a signed push to the tracked branch wakes the daemon now.

GitHub signs the body with HMAC-SHA256 (``X-Hub-Signature-256: sha256=<hex>``), Gitea and
Forgejo the same in plain hex (``X-Gitea-Signature``, ``X-Forgejo-Signature``; newer ones send
GitHub's header too), and GitLab sends the shared secret itself (``X-Gitlab-Token``). The
request is authenticated before anything in it is read. The worst a valid request can do is
make a pass happen sooner: the pass fetches whatever the branch holds, so a replayed delivery
changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gitops.serve import Request, Response

log = logging.getLogger(__name__)

# Event headers and what each calls a push, most specific first: Gitea also sends X-GitHub-Event.
_PUSH_EVENTS = {
    "X-Gitea-Event": "push",
    "X-Forgejo-Event": "push",
    "X-GitHub-Event": "push",
    "X-Gitlab-Event": "Push Hook",
}


@dataclass(frozen=True)
class Verdict:
    """What to answer, and whether the request triggers a pass."""

    status: int
    message: str
    trigger: bool = False


def _hmac_hex(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


def _given(value: str) -> bytes:
    # Header values may hold any byte; compare_digest takes ASCII strings only, bytes always.
    return value.strip().encode("utf-8", "surrogateescape")


def authenticate(request: Request, secret: bytes) -> str | None:
    """Why the request is not from a forge holding ``secret`` (None: it is), checked in constant time."""
    github = request.header("X-Hub-Signature-256")
    if github is not None:
        ok = hmac.compare_digest(_given(github), b"sha256=" + _hmac_hex(secret, request.body))
        return None if ok else "X-Hub-Signature-256 does not match the body and secret"
    for name in ("X-Gitea-Signature", "X-Forgejo-Signature"):
        hexsig = request.header(name)
        if hexsig is not None:
            ok = hmac.compare_digest(_given(hexsig), _hmac_hex(secret, request.body))
            return None if ok else f"{name} does not match the body and secret"
    token = request.header("X-Gitlab-Token")
    if token is not None:
        return None if hmac.compare_digest(_given(token), secret) else "X-Gitlab-Token is not the secret"
    return "no signature: set the webhook's secret (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)"


def check(request: Request, path: str, secret: bytes, branch: str) -> Verdict:
    """The answer to one request; only an authenticated push to ``branch`` triggers a pass."""
    if request.path != path:
        return Verdict(404, "not found")
    if request.method != "POST":
        return Verdict(405, "POST only")
    problem = authenticate(request, secret)
    if problem is not None:
        return Verdict(401, problem)
    header, event = next(((h, v) for h in _PUSH_EVENTS if (v := request.header(h)) is not None), ("", None))
    if event == "ping":
        return Verdict(200, "pong")
    if event != _PUSH_EVENTS.get(header):
        return Verdict(400, f"event {event!r} is not a push: send push events only")
    if "application/json" not in (request.header("Content-Type") or "application/json"):
        return Verdict(415, "the payload must be JSON: set the webhook's content type to application/json")
    try:
        payload = json.loads(request.body)
    except (ValueError, RecursionError):
        return Verdict(400, "the body is not JSON")
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if not isinstance(ref, str):
        return Verdict(400, "the push has no ref")
    if ref != f"refs/heads/{branch}":
        # Signed, but not ours. GitLab disables a hook that keeps answering 4xx, and a
        # repository's hook fires for every branch: this one is acknowledged and ignored.
        return Verdict(202, f"ignored: a push to {ref}, this node tracks refs/heads/{branch}")
    return Verdict(200, f"pass triggered by a push to {ref}", trigger=True)


@dataclass(frozen=True)
class Webhook:
    """The endpoint: answers every request, wakes the daemon for a push to its branch."""

    path: str
    secret: bytes
    branch: str
    trigger: Callable[[], None]

    def serve(self, request: Request) -> Response:
        """Answer ``request``; call ``trigger`` when it is a verified push to the branch."""
        verdict = check(request, self.path, self.secret, self.branch)
        if verdict.trigger:
            self.trigger()
        # Scanners probing other paths are not news; a bad signature or a misconfigured forge is.
        if verdict.status in (404, 405):
            level = logging.DEBUG
        else:
            level = logging.WARNING if verdict.status >= 400 else logging.INFO
        log.log(level, "webhook: %d %s", verdict.status, verdict.message)
        return Response(verdict.status, verdict.message + "\n")
