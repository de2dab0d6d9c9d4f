"""Lifecycle hooks: postStart after a container starts, preStop before it is told to stop.

Hooks travel in the container's labels (``gitops.hooks``), so a container is stopped with the
preStop it was created with, by whichever daemon stops it, whatever the spec says by then.
"""

from __future__ import annotations

import threading
import time

from pydantic import ValidationError

from gitops.health import NoAddress, container_address, http_get
from gitops.identity import Observed
from gitops.model import Handler, Hooks, canonical_json
from gitops.runtime.base import ProbeRuntime, RuntimeFailure, RuntimeUnavailable

# As the kubelet does, SIGTERM gets at least this long after a preStop hook used up the grace.
MIN_STOP_GRACE_S = 2


def encode(hooks: Hooks | None) -> str:
    """The label value for a container's hooks (empty: none)."""
    return "" if hooks is None else canonical_json(hooks).decode()


def decode(c: Observed) -> Hooks | None:
    """The hooks a container was created with; None if it has none or its label is unreadable."""
    if not c.hooks:
        return None
    try:
        return Hooks.model_validate_json(c.hooks)
    except ValidationError:
        return None


def run_hook(runtime: ProbeRuntime, cid: str, hook: Handler, limit_s: float) -> str | None:
    """Run one hook against a running container within ``limit_s``; why it failed, or None."""
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(_run(runtime, cid, hook, limit_s)), daemon=True)
    worker.start()
    # An exec cannot be cancelled: past the limit it is left to die with its container.
    worker.join(limit_s)
    if not result:
        return f"{hook.handler} hook did not finish within {limit_s:.0f}s"
    return result[0]


def _run(runtime: ProbeRuntime, cid: str, hook: Handler, limit_s: float) -> str | None:
    try:
        if hook.handler == "sleep":
            time.sleep(min(hook.timeout_s, limit_s))
            return None
        if hook.handler == "exec":
            code, _ = runtime.exec(cid, list(hook.command))
            return None if code == 0 else f"exec {' '.join(hook.command)[:80]}: exit code {code}"
        outcome = http_get(hook.host or container_address(runtime, cid), hook)
        return None if outcome.success else outcome.message
    except (RuntimeFailure, RuntimeUnavailable, NoAddress) as e:
        return f"{hook.handler} hook: {e}"


def pre_stop(runtime: ProbeRuntime, c: Observed) -> int | None:
    """Run the container's preStop hook, if any, inside its grace period; the grace left for SIGTERM.

    None means no hook ran and the stop takes the container's whole grace period.
    """
    hooks = decode(c)
    if hooks is None or hooks.pre_stop is None or c.state != "running":
        return None
    grace = (runtime.inspect(c.id).get("Config") or {}).get("StopTimeout")
    grace_s = grace if isinstance(grace, int) else 30
    began = time.monotonic()
    # A failing preStop does not hold up the stop (the kubelet only records an event).
    run_hook(runtime, c.id, hooks.pre_stop, grace_s)
    return max(MIN_STOP_GRACE_S, grace_s - int(time.monotonic() - began))
