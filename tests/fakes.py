"""In-memory stand-ins for the engine and the prober, for tests that must not need Docker.

``FakeRuntime`` implements the ``Runtime`` Protocol (gitops/runtime/base.py) structurally; it is
not a DockerRuntime. It keeps containers, images and volumes in dictionaries, records every
call, and can fail or slow down chosen calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gitops.health import UNWATCHED, Health, ProbeTarget
from gitops.identity import LABEL, Observed
from gitops.runtime.base import RunRequest, RuntimeFailure
from gitops.runtime.cgroups import ContainerUsage


class Call(NamedTuple):
    """One recorded engine call: the method name and its subject (id, image, name...)."""

    op: str
    subject: str


@dataclass
class _Rule:
    error: Exception
    match: str | None
    times: int | None  # None: every matching call


@dataclass
class FakeRuntime:
    """A container engine in memory: ``run`` creates a running container, ``remove`` deletes it.

    - ``calls``: every call in the order made (thread-safe), as ``Call(op, subject)``;
    - ``fail(op, error, match=..., times=...)``: raise ``error`` from matching calls of ``op``
      (``heal(op)`` stops that);
    - ``delay(op, seconds)``: sleep before doing ``op``; ``hold(op)``: block ``op`` until the
      returned event is set;
    - ``max_in_flight``: the most calls that were in progress at once.
    """

    images: set[str] = field(default_factory=set)
    containers: dict[str, Observed] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    # name -> (driver, options) it was created with
    volume_options: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    requests: list[RunRequest] = field(default_factory=list)
    # image -> the credentials its last pull was given
    pull_auths: dict[str, dict[str, str] | None] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    max_in_flight: int = 0
    # every container's grace period, as ``inspect`` reports it
    stop_timeout: int = 30
    # container-name fragment -> the exit code ``wait`` reports (init containers)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    # container id -> the grace period its last stop, restart or removal was given (None: its own)
    graces: dict[str, int | None] = field(default_factory=dict)
    # container id -> what ``usage`` reports for it (set by tests; others are not sampled)
    usages: dict[str, ContainerUsage] = field(default_factory=dict)
    _rules: dict[str, list[_Rule]] = field(default_factory=dict)
    _delays: dict[str, float] = field(default_factory=dict)
    _holds: dict[str, threading.Event] = field(default_factory=dict)
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 0

    # --- test controls ---

    def fail(self, op: str, error: Exception, *, match: str | None = None, times: int | None = 1) -> None:
        """Raise ``error`` from the next ``times`` calls of ``op`` whose subject contains ``match``."""
        self._rules.setdefault(op, []).append(_Rule(error, match, times))

    def heal(self, op: str) -> None:
        """Drop every failure still set up for ``op``."""
        self._rules.pop(op, None)

    def delay(self, op: str, seconds: float) -> None:
        """Make every call of ``op`` take at least ``seconds``."""
        self._delays[op] = seconds

    def hold(self, op: str) -> threading.Event:
        """Block calls of ``op`` until the returned event is set."""
        event = threading.Event()
        self._holds[op] = event
        return event

    def ops(self, *only: str) -> list[str]:
        """The names of the calls made so far (only those in ``only`` if given)."""
        with self._lock:
            return [c.op for c in self.calls if not only or c.op in only]

    def subjects(self, op: str) -> list[str]:
        """The subjects of every call of ``op`` so far."""
        with self._lock:
            return [c.subject for c in self.calls if c.op == op]

    def add_container(self, c: Observed) -> Observed:
        """Put an existing container into the engine."""
        with self._lock:
            self.containers[c.id] = c
        return c

    # --- the Protocol ---

    def _call(self, op: str, subject: str) -> None:
        with self._lock:
            self.calls.append(Call(op, subject))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            error = self._take_error(op, subject)
        try:
            if op in self._delays:
                time.sleep(self._delays[op])
            if op in self._holds and not self._holds[op].wait(timeout=10):
                raise AssertionError(f"{op} held for more than 10 s: the test never released it")
        finally:
            with self._lock:
                self._in_flight -= 1
        if error is not None:
            raise error

    def _take_error(self, op: str, subject: str) -> Exception | None:
        for rule in self._rules.get(op, []):
            if rule.match is not None and rule.match not in subject:
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self._rules[op].remove(rule)
            return rule.error
        return None

    def inspect(self, cid: str) -> dict[str, Any]:
        self._call("inspect", cid)
        c = self.containers[cid]
        config = {"Labels": dict(c.labels), "StopTimeout": self.stop_timeout}
        return {"Id": c.id, "Name": "/" + c.name, "Config": config, "State": {"Status": c.state}}

    def exec(self, cid: str, cmd: list[str]) -> tuple[int, str]:
        self._call("exec", cid)
        return 0, ""

    def ping(self) -> None:
        self._call("ping", "")

    def list_managed(self, node: str) -> list[Observed]:
        self._call("list_managed", node)
        with self._lock:
            return [c for c in self.containers.values() if c.labels.get(LABEL + "node") == node]

    def usage(self, cids: Sequence[str]) -> dict[str, ContainerUsage]:
        self._call("usage", "")
        return {c: self.usages[c] for c in cids if c in self.usages}

    def image_present(self, image: str) -> bool:
        self._call("image_present", image)
        return image in self.images

    def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        self._call("pull", image)
        with self._lock:
            self.pull_auths[image] = auth
            self.images.add(image)

    def run(self, req: RunRequest) -> str:
        self._call("run", req.name)
        with self._lock:
            if any(c.name == req.name for c in self.containers.values()):
                raise RuntimeFailure(f"name {req.name} is already in use", "RunFailed")
            self._next_id += 1
            cid = f"c{self._next_id}"
            self.requests.append(req)
            # As the engine does: a port without a host port gets one from the ephemeral range.
            published = tuple(
                (int(key.split("/")[0]), key.split("/")[1], port or 40000 + self._next_id)
                for key, port in req.ports.items()
                if port is not None or req.publish_ip
            )
            # A pod's own network namespace gets an address on a bridge, as the engine's default network gives one.
            shared = req.network_mode == "host" or (req.network_mode or "").startswith("container:")
            network = "" if shared else f"{req.ip or f'172.30.{self._next_id // 256}.{self._next_id % 256}'}/16"
            self.containers[cid] = Observed(
                cid, req.name, dict(req.labels), "running", None, self._next_id, published, network
            )
        return cid

    def _set_state(self, cid: str, state: str, exit_code: int | None = None) -> None:
        with self._lock:
            c = self.containers.get(cid)
            if c is None:
                raise RuntimeFailure(f"no such container: {cid}", "NotFound")
            self.containers[cid] = Observed(c.id, c.name, c.labels, state, exit_code, c.created, c.published, c.network)

    def start(self, cid: str) -> None:
        self._call("start", cid)
        self._set_state(cid, "running")

    def stop(self, cid: str, grace_s: int | None = None) -> None:
        self._call("stop", cid)
        self.graces[cid] = grace_s
        self._set_state(cid, "exited", 0)

    def restart(self, cid: str, grace_s: int | None = None) -> None:
        self._call("restart", cid)
        self.graces[cid] = grace_s
        self._set_state(cid, "running")

    def remove(self, cid: str, grace_s: int | None = None) -> None:
        self._call("remove", cid)
        with self._lock:
            self.graces[cid] = grace_s
            self.containers.pop(cid, None)

    def wait(self, cid: str, timeout_s: float) -> int | None:
        """Exits at once with the code ``exit_codes`` holds for a fragment of its name (else 0); None: runs on."""
        self._call("wait", cid)
        with self._lock:
            name = self.containers[cid].name
        code = next((v for k, v in self.exit_codes.items() if k in name), 0)
        if code is None:
            time.sleep(0.01)  # as if the wait timed out
            return None
        self._set_state(cid, "exited", code)
        return code

    def logs_tail(self, cid: str, lines: int = 20) -> str:
        self._call("logs_tail", cid)
        return ""

    def ensure_volume(
        self, name: str, labels: dict[str, str], driver: str = "local", options: dict[str, str] | None = None
    ) -> None:
        self._call("ensure_volume", name)
        with self._lock:
            self.volumes.setdefault(name, dict(labels))
            self.volume_options.setdefault(name, (driver, dict(options or {})))

    def remove_volumes(self, label_filters: list[str]) -> None:
        self._call("remove_volumes", ",".join(label_filters))
        wanted = [f.split("=", 1) for f in label_filters]
        with self._lock:
            for name, labels in list(self.volumes.items()):
                if all(labels.get(k) == v for k, v in wanted):
                    del self.volumes[name]
                    self.volume_options.pop(name, None)

    def list_volumes(self, label_filters: list[str]) -> dict[str, dict[str, str]]:
        self._call("list_volumes", ",".join(label_filters))
        wanted = [f.split("=", 1) for f in label_filters]
        with self._lock:
            return {
                name: dict(labels)
                for name, labels in self.volumes.items()
                if all(labels.get(k[0]) == k[1] if len(k) == 2 else k[0] in labels for k in wanted)
            }

    def pod_network(self, name: str) -> str:
        self._call("pod_network", name)
        return "10.213.0.0/24"

    def close(self) -> None:
        self._call("close", "")


@dataclass
class FakeProber:
    """What ``observe`` needs of a prober: ``sync(targets)`` then ``result(cid)``; verdicts are set by the test."""

    verdicts: dict[str, Health] = field(default_factory=dict)
    synced: list[dict[str, ProbeTarget]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def sync(self, targets: Mapping[str, ProbeTarget]) -> None:
        self.synced.append(dict(targets))

    def result(self, cid: str) -> Health:
        self.asked.append(cid)
        return self.verdicts.get(cid, UNWATCHED)
