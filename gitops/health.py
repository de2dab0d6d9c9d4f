"""Kubernetes-style container probes: startup, liveness and readiness, run off the reconcile loop.

The threshold counting and scheduling live in ``ContainerProbes``, which does no I/O and takes
the time as an argument, so it is tested without Docker or threads. ``Prober`` wraps it with a
scheduler thread, a worker pool and the three handlers (exec, httpGet, tcpSocket).
"""

from __future__ import annotations

import functools
import http.client
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, Literal

from gitops.model import Handler, Probe
from gitops.runtime.base import ProbeRuntime, RuntimeFailure, RuntimeUnavailable

log = logging.getLogger(__name__)

Kind = Literal["startup", "liveness", "readiness"]
# Also the order in which a failing probe's message is reported.
KINDS: tuple[Kind, ...] = ("startup", "liveness", "readiness")

MESSAGE_MAX = 300
# Network handlers enforce timeout_s themselves; the grace covers queueing and the address lookup
# so that the scheduler's deadline (the only limit an exec has) does not pre-empt them.
_GRACE_S = 0.5
# The injected clock need not be time.monotonic, so never sleep long on a computed deadline.
_MAX_WAIT_S = 1.0


@dataclass(frozen=True)
class ProbeTarget:
    """What to probe in one running container; ``host`` overrides the inspected address."""

    liveness: Probe | None
    readiness: Probe | None
    startup: Probe | None
    started_at: float
    host: str | None = None

    def probes(self) -> dict[Kind, Probe]:
        """The configured probes by kind."""
        found: dict[Kind, Probe | None] = {
            "startup": self.startup,
            "liveness": self.liveness,
            "readiness": self.readiness,
        }
        return {k: p for k, p in found.items() if p is not None}


@dataclass(frozen=True)
class Health:
    """A container's verdicts as the reconciler and status report read them."""

    ready: bool
    live: bool
    started: bool
    message: str = ""
    consecutive_failures: int = 0


# What result() answers for a container it was never asked to watch: not ready, but no reason to restart.
UNWATCHED = Health(ready=False, live=True, started=False, message="not probed")


@dataclass(frozen=True)
class ProbeState:
    """Consecutive-result counters and the current verdict of one probe."""

    ok: bool
    successes: int = 0
    failures: int = 0
    message: str = ""


def initial_state(kind: Kind) -> ProbeState:
    """Kubernetes' starting verdicts: live until proven dead, neither started nor ready until proven so."""
    return ProbeState(ok=kind == "liveness")


def probe_state_after(state: ProbeState, probe: Probe, success: bool, message: str = "") -> ProbeState:
    """The state after one more result: the verdict flips only after threshold results in a row."""
    if success:
        n = state.successes + 1
        return ProbeState(ok=state.ok or n >= probe.success_threshold, successes=n)
    n = state.failures + 1
    return ProbeState(ok=state.ok and n < probe.failure_threshold, failures=n, message=_clip(message))


@dataclass
class _Slot:
    """Schedule and state of one probe of one container."""

    kind: Kind
    probe: Probe
    state: ProbeState
    next_at: float
    attempt: int = 0
    # Set while the current attempt's result still counts; cleared when it arrives or times out.
    deadline: float | None = None
    # The current attempt's worker has not returned (it may outlive its deadline: exec can't be cancelled).
    running: bool = False


class ContainerProbes:
    """Scheduling and verdicts of one container's probes; pure: time comes in as arguments."""

    def __init__(self, target: ProbeTarget):
        self.target = target
        self._slots: dict[Kind, _Slot] = {
            kind: _Slot(kind, probe, initial_state(kind), target.started_at + probe.initial_delay_s)
            for kind, probe in target.probes().items()
        }

    @property
    def started(self) -> bool:
        """Whether the startup probe passed (or there is none)."""
        slot = self._slots.get("startup")
        return slot is None or slot.state.ok

    def _startup_failed(self) -> bool:
        slot = self._slots.get("startup")
        return slot is not None and not slot.state.ok and slot.state.failures >= slot.probe.failure_threshold

    def _active(self, slot: _Slot) -> bool:
        """Whether the probe is still to be run: startup until it decides, the others once it passed."""
        if slot.kind == "startup":
            return not self.started and not self._startup_failed()
        if not self.started:
            return False
        # A failed liveness is final: the reconciler restarts the container and forgets this id.
        return slot.kind == "readiness" or slot.state.ok

    def due(self, now: float) -> list[tuple[Kind, int, Probe]]:
        """Start every probe whose time has come: (kind, attempt, probe) for each to run now."""
        self._expire(now)
        start: list[tuple[Kind, int, Probe]] = []
        for slot in self._slots.values():
            # An attempt within its timeout delays the next one, as kubelet runs a container's probe serially.
            if not self._active(slot) or now < slot.next_at or slot.deadline is not None:
                continue
            slot.next_at = now + slot.probe.period_s
            if slot.running:
                # Don't pile a second worker onto a stuck one; the missed period still counts as a failure.
                self._record(slot, False, f"previous probe still running after {slot.probe.timeout_s}s")
                continue
            slot.attempt += 1
            slot.running = True
            slot.deadline = now + slot.probe.timeout_s + _GRACE_S
            start.append((slot.kind, slot.attempt, slot.probe))
        return start

    def _expire(self, now: float) -> None:
        for slot in self._slots.values():
            if slot.deadline is not None and now >= slot.deadline:
                slot.deadline = None
                # A full period before the stuck attempt is counted again, not a second failure at once.
                slot.next_at = max(slot.next_at, now + slot.probe.period_s)
                self._record(slot, False, f"timed out after {slot.probe.timeout_s}s")

    def finish(self, kind: Kind, attempt: int, success: bool | None, message: str, now: float) -> None:
        """Record an attempt's result; ``success=None`` (the engine did not answer) counts neither way."""
        slot = self._slots.get(kind)
        if slot is None or attempt != slot.attempt:
            return
        slot.running = False
        self._expire(now)
        if slot.deadline is None:
            return
        slot.deadline = None
        if success is not None:
            self._record(slot, success, message)

    def _record(self, slot: _Slot, success: bool, message: str) -> None:
        slot.state = probe_state_after(slot.state, slot.probe, success, message)

    def next_event(self) -> float | None:
        """The earliest time due() has something to do, or None when nothing is pending."""
        times = [
            s.deadline if s.deadline is not None else s.next_at
            for s in self._slots.values()
            if s.deadline is not None or self._active(s)
        ]
        return min(times, default=None)

    def health(self) -> Health:
        """The verdicts derived from the probes' states."""
        states = {kind: slot.state for kind, slot in self._slots.items()}
        started = self.started
        live = not self._startup_failed() and ("liveness" not in states or states["liveness"].ok)
        ready = started and ("readiness" not in states or states["readiness"].ok)
        message = next((f"{k} probe: {states[k].message}" for k in KINDS if k in states and states[k].message), "")
        readiness = states.get("readiness")
        return Health(ready, live, started, message, readiness.failures if readiness else 0)


@dataclass(frozen=True)
class Outcome:
    """One probe attempt's result; ``success`` is None when the attempt could not be made at all."""

    success: bool | None
    message: str = ""


class NoAddress(Exception):
    """The container has no address a network probe could reach."""


class Prober:
    """Probes every watched container on its own schedule and reports flips of ready/live."""

    def __init__(
        self,
        runtime: ProbeRuntime,
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        workers: int = 4,
        output: Callable[[str], str] | None = None,
    ):
        self.runtime = runtime
        # Exec probes' output reaches status only through this filter (redaction); None keeps it out.
        self.output = output
        self.on_change = on_change
        self.clock = clock
        self._workers = workers
        self._cond = threading.Condition()
        self._containers: dict[str, ContainerProbes] = {}
        # (ready, live) as last reported through on_change, to detect flips.
        self._reported: dict[str, tuple[bool, bool]] = {}
        self._addresses: dict[str, str] = {}
        self._wake = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the scheduler thread and the worker pool."""
        if self._thread is not None:
            return
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="gitops-probe")
        self._thread = threading.Thread(target=self._loop, args=(self._pool,), name="gitops-prober", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; probes still running are abandoned, not waited for."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def sync(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Watch exactly these containers; known ids with unchanged probes keep their state."""
        with self._cond:
            for cid in list(self._containers):
                if cid not in targets:
                    self._drop(cid)
            for cid, target in targets.items():
                known = self._containers.get(cid)
                if known is not None and known.target.probes() == target.probes():
                    if known.target.host != target.host:
                        known.target = target
                        self._addresses.pop(cid, None)
                    continue
                self._drop(cid)
                probes = ContainerProbes(target)
                self._containers[cid] = probes
                h = probes.health()
                self._reported[cid] = (h.ready, h.live)
            self._wake = True
            self._cond.notify_all()

    def forget(self, cid: str) -> None:
        """Stop watching one container (after the reconciler restarted or removed it)."""
        with self._cond:
            self._drop(cid)

    def _drop(self, cid: str) -> None:
        self._containers.pop(cid, None)
        self._reported.pop(cid, None)
        self._addresses.pop(cid, None)

    def result(self, cid: str) -> Health:
        """The container's current verdicts; UNWATCHED for an id sync() never gave."""
        with self._cond:
            probes = self._containers.get(cid)
            return probes.health() if probes is not None else UNWATCHED

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self.clock()
                batch = [(cid, probes, due) for cid, probes in self._containers.items() for due in probes.due(now)]
                changed = self._note_flips()
                pending = [t for t in (p.next_event() for p in self._containers.values()) if t is not None]
            for cid, probes, (kind, attempt, probe) in batch:
                fut = pool.submit(self._run, cid, probes.target, probe)
                fut.add_done_callback(functools.partial(self._finished, cid, probes, kind, attempt))
            if changed:
                try:
                    self.on_change()
                except Exception:
                    log.exception("probe on_change callback failed")
            with self._cond:
                if not self._wake and not self._stopping:
                    wait = min([_MAX_WAIT_S, *(t - self.clock() for t in pending)])
                    if wait > 0:
                        self._cond.wait(wait)
                self._wake = False

    def _note_flips(self) -> bool:
        changed = False
        for cid, probes in self._containers.items():
            h = probes.health()
            verdict = (h.ready, h.live)
            if self._reported.get(cid) != verdict:
                self._reported[cid] = verdict
                changed = True
        return changed

    def _finished(self, cid: str, probes: ContainerProbes, kind: Kind, attempt: int, fut: Future[Outcome]) -> None:
        outcome = Outcome(None, "cancelled") if fut.cancelled() else fut.result()
        with self._cond:
            # A forgotten or re-synced container's late result must not touch its successor.
            if self._containers.get(cid) is not probes:
                return
            probes.finish(kind, attempt, outcome.success, outcome.message, self.clock())
            self._wake = True
            self._cond.notify_all()

    def _run(self, cid: str, target: ProbeTarget, probe: Probe) -> Outcome:
        """Run one probe attempt in a worker; never raises."""
        try:
            if probe.handler == "exec":
                return self._exec(cid, probe)
            host = probe.host or target.host or self._address(cid)
            if probe.handler == "httpGet":
                return http_get(host, probe)
            if probe.handler == "grpc":
                return grpc_check(host, probe)
            return tcp_connect(host, probe)
        except RuntimeUnavailable as e:
            return Outcome(None, str(e))
        except (RuntimeFailure, NoAddress) as e:
            return Outcome(False, _clip(str(e)))
        except Exception as e:
            log.exception("%s probe of %s raised", probe.handler, cid[:12])
            return Outcome(False, _clip(f"probe error: {type(e).__name__}: {e}"))

    def _exec(self, cid: str, probe: Probe) -> Outcome:
        code, output = self.runtime.exec(cid, list(probe.command))
        if code == 0:
            return Outcome(True)
        if self.output is None:
            return Outcome(False, f"exit code {code}")
        return Outcome(False, _clip(f"exit code {code}: {self.output(output.strip())}"))

    def _address(self, cid: str) -> str:
        """The IP a network probe reaches the container at, inspected once per container."""
        with self._cond:
            cached = self._addresses.get(cid)
        if cached is not None:
            return cached
        ip = container_address(self.runtime, cid)
        with self._cond:
            if cid in self._containers:
                self._addresses[cid] = ip
        return ip


def container_address(runtime: ProbeRuntime, cid: str) -> str:
    """The IP a network probe or hook reaches the container at; NoAddress if it has none."""
    current = cid
    # container:<id> joins another container's network namespace; follow it a few hops at most.
    for _ in range(3):
        info = runtime.inspect(current)
        mode = str((info.get("HostConfig") or {}).get("NetworkMode") or "")
        if mode == "host":
            return "127.0.0.1"
        if mode.startswith("container:"):
            current = mode.removeprefix("container:")
            continue
        ip = container_ip(info.get("NetworkSettings") or {})
        if ip:
            return ip
        raise NoAddress(f"no IP address for container {cid[:12]} (network mode {mode or 'default'})")
    raise NoAddress(f"no IP address for container {cid[:12]}: network namespace chain too long")


def container_ip(settings: Mapping[str, Any]) -> str:
    """The container's IP from inspect's NetworkSettings: the default bridge's, else the first network's."""
    ip = settings.get("IPAddress")
    if ip:
        return str(ip)
    for net in (settings.get("Networks") or {}).values():
        if net and net.get("IPAddress"):
            return str(net["IPAddress"])
    return ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as its 3xx status, which already counts as success, rather than follow it off-host."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        return None


def _insecure_context() -> ssl.SSLContext:
    # kubelet does not verify probe certificates: containers commonly serve self-signed ones.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# No proxies: an HTTP_PROXY in the daemon's environment must not reroute probes of local containers.
_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    _NoRedirect(),
    urllib.request.HTTPSHandler(context=_insecure_context()),
)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_get(host: str, probe: Handler) -> Outcome:
    """GET the probe's (or hook's) URL on ``host``; success on a status from 200 to 399."""
    path = probe.path if probe.path.startswith("/") else "/" + probe.path
    url = f"{probe.scheme.lower()}://{_netloc(host, probe.port)}{path}"
    headers = {"User-Agent": "gitops-probe", "Accept": "*/*", **dict(probe.headers)}
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with _OPENER.open(request, timeout=probe.timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as e:
        status = e.code
        e.close()
    except urllib.error.URLError as e:
        return Outcome(False, _clip(f"GET {url}: {e.reason}"))
    except (OSError, http.client.HTTPException) as e:
        return Outcome(False, _clip(f"GET {url}: {e or type(e).__name__}"))
    if 200 <= status < 400:
        return Outcome(True)
    return Outcome(False, _clip(f"GET {url}: HTTP status {status}"))


def tcp_connect(host: str, probe: Handler) -> Outcome:
    """Open (and close) a TCP connection to the probe's port on ``host``."""
    try:
        with socket.create_connection((host, probe.port), timeout=probe.timeout_s):
            return Outcome(True)
    except OSError as e:
        return Outcome(False, _clip(f"tcp {_netloc(host, probe.port)}: {e.strerror or e}"))


# grpc.health.v1.HealthCheckResponse.ServingStatus
_GRPC_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def grpc_check(host: str, probe: Handler) -> Outcome:
    """Call grpc.health.v1.Health/Check on the probe's port; success only on SERVING, as the kubelet does."""
    # Imported here: a node without gRPC probes never loads grpcio (idle memory).
    import grpc

    target = _netloc(host, probe.port)
    # HealthCheckRequest{service = 1}: the two messages are small enough to encode by hand.
    name = probe.service.encode()
    request = b"\x0a" + _varint(len(name)) + name if name else b""
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            response = check(request, timeout=probe.timeout_s)
        except grpc.RpcError as e:
            return Outcome(False, _clip(f"grpc {target}: {e.code().name}: {e.details()}"))
    status = _grpc_status(response)
    if status == 1:
        return Outcome(True)
    return Outcome(False, _clip(f"grpc {target}: {_GRPC_STATUS.get(status, str(status))}"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _grpc_status(message: bytes) -> int:
    """Field 1 (status, a varint) of a HealthCheckResponse; 0 (UNKNOWN) when absent."""
    i, status = 0, 0
    while i < len(message):
        key = message[i]
        i += 1
        wire, field = key & 7, key >> 3
        value, shift = 0, 0
        if wire != 0:
            return status  # the response has only the varint field; anything else is not ours to read
        while i < len(message):
            byte = message[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if field == 1:
            status = value
    return status


def _clip(text: str) -> str:
    """One line, at most MESSAGE_MAX characters, keeping the tail where output ends in its error."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_MAX else "…" + flat[-(MESSAGE_MAX - 1) :]
