"""The long-running daemon: one reconcile thread, woken by a timer, a trigger file or a push."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gitops.config import Config
from gitops.health import Prober
from gitops.metrics import MAX_CRASHES
from gitops.reconcile.reconciler import PassFailed, Reconciler
from gitops.secrets import redact
from gitops.serve import Endpoint, HttpEndpoint, parse_address
from gitops.source import GitError, normalise_url
from gitops.webhook import Webhook

log = logging.getLogger(__name__)

READ_ONLY_EVENTS = frozenset({"opened", "closed_no_write"})
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
HEARTBEAT_TICK_S = 0.5
# After a pass that acted, the next one comes this soon: it sees what the actions led to (a new
# container ready, so its predecessor can go) without waiting for the interval.
REQUEUE_S = 1.0
# While starts queue beyond the start workers, a pass can start nothing sooner, and its listing of
# every container costs the engine CPU those starts need (0.2 s of dockerd per listing at 1,000
# containers): passes then rest this many times the CPU they used, whatever wakes them. CPU, not
# wall time: a pass also waits up to 10 s for its starts.
BACKLOG_REST_FACTOR = 5.0


def rest_after(cpu_s: float, backlog: int) -> float:
    """Seconds the loop rests after a pass that used ``cpu_s`` of CPU and left ``backlog`` starts queued."""
    return BACKLOG_REST_FACTOR * cpu_s if backlog > 0 else 0.0


def sd_notify(message: str) -> None:
    """Send a systemd notification when running under ``Type=notify``; a no-op elsewhere."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as e:
        log.debug("sd_notify failed: %s", e)


class _Wake(FileSystemEventHandler):
    """Wakes the reconcile loop when a watched path changes (optionally one file only)."""

    def __init__(self, wake: threading.Event, only: Path | None = None):
        self.wake = wake
        self.only = only

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Reads (our own git rev-parse opens the refs) must not look like changes.
        if event.event_type in READ_ONLY_EVENTS:
            return
        if self.only is None or Path(os.fsdecode(event.src_path)) == self.only:
            self.wake.set()


class BranchWatcher:
    """Wakes the loop when the tracked branch of a local repository moves.

    File events in a git directory come in bursts and include our own status pushes,
    so events only mark the ref as worth re-reading; the loop is woken only when the
    branch really points somewhere new.
    """

    DEBOUNCE_S = 0.05

    def __init__(self, git_dir: Path, branch: str, wake: threading.Event, stopping: threading.Event):
        self.git_dir = git_dir
        self.branch = branch
        self.wake = wake
        self.stopping = stopping
        self.dirty = threading.Event()
        self.last = self._head()
        self.thread = threading.Thread(target=self._run, name="branch-watcher", daemon=True)

    def schedule(self, observer: Any) -> None:
        """Watch the ref files (not the object store) and start the checker thread."""
        observer.schedule(_Wake(self.dirty), str(self.git_dir), recursive=False)
        heads = self.git_dir / "refs" / "heads"
        if heads.is_dir():
            observer.schedule(_Wake(self.dirty), str(heads), recursive=True)
        self.thread.start()

    def _head(self) -> str:
        proc = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.git_dir),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{self.branch}",
            ],
            capture_output=True,
            check=False,
        )
        return proc.stdout.decode().strip()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if not self.dirty.wait(1.0):
                continue
            time.sleep(self.DEBOUNCE_S)
            self.dirty.clear()
            head = self._head()
            if head != self.last:
                self.last = head
                self.wake.set()


def local_git_dir(url: str) -> Path | None:
    """The git directory of a repository given as a local path, for change watching."""
    norm = normalise_url(url)
    if norm.startswith("file://"):
        norm = norm[len("file://") :]
    if "://" in norm or not norm.startswith("/"):
        return None
    p = Path(norm)
    if (p / ".git").is_dir():
        return p / ".git"
    return p if (p / "HEAD").exists() else None


class Daemon:
    """Runs passes until stopped; containers are left running when it exits."""

    def __init__(self, config: Config, reconciler: Reconciler):
        self.config = config
        self.reconciler = reconciler
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.passes = 0
        self.last_ok: bool | None = None
        self.crashes = 0
        self.acted = False
        # CPU the last completed pass used on the loop's thread.
        self.pass_cpu_s = 0.0
        self._last_pass_at = 0.0

    def stop(self, *_: Any) -> None:
        """Ask the loop to finish its pass and exit."""
        self.stopping.set()
        self.wake.set()

    def _install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping, containers keep running", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the process exit code."""
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        try:
            endpoints = self._endpoints()
        except (OSError, ValueError) as e:
            log.error("%s", e)
            return 1
        self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        trigger = self.config.trigger_file
        trigger.touch()
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            self._interval_tick,
            "interval",
            seconds=self.config.interval,
            jitter=self.config.effective_jitter,
            max_instances=1,
            coalesce=True,
            id="reconcile-interval",
        )
        observer = Observer()
        observer.schedule(_Wake(self.wake, trigger), str(trigger.parent), recursive=False)
        git_dir = local_git_dir(self.config.repo)
        if git_dir is not None:
            BranchWatcher(git_dir, self.config.branch, self.wake, self.stopping).schedule(observer)
        # Readiness and liveness flips wake the loop, so status (and rollouts elsewhere) move promptly.
        secrets_dir = self.config.secrets_dir
        output = (lambda text: redact(text, secrets_dir)) if self.config.status_logs else None
        prober = Prober(self.reconciler.runtime, self.wake.set, output=output)
        self.reconciler.prober = prober
        prober.start()
        scheduler.start()
        observer.start()
        heartbeats = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        heartbeats.start()
        try:
            self._loop()
        finally:
            heartbeats.join(timeout=5)
            prober.stop()
            observer.stop()
            scheduler.shutdown(wait=False)
            observer.join(timeout=5)
            for endpoint in endpoints:
                endpoint.close()
            self.reconciler.close()
            sd_notify("STOPPING=1")
        return 0

    def _endpoints(self) -> list[HttpEndpoint]:
        """The HTTP endpoints the config asks for, listening; OSError or ValueError saying which cannot."""
        wanted: list[tuple[str, str, Endpoint]] = []
        if self.config.metrics_address:
            wanted.append(("metrics", self.config.metrics_address, self.reconciler.metrics.serve))
        hook = self.config.webhook
        if hook is not None:
            try:
                secret = hook.secret_file.read_bytes().strip()
            except OSError as e:
                raise OSError(f"webhook.secret_file: {e}") from e
            if not secret:
                raise ValueError(
                    f"webhook.secret_file {hook.secret_file} is empty: put the forge's webhook secret in it"
                )
            # A verified push wakes the loop, as `gitops sync` and new commits in a local repository do.
            wanted.append(
                ("webhook", hook.address, Webhook(hook.path, secret, self.config.branch, self.wake.set).serve)
            )
        endpoints: list[HttpEndpoint] = []
        for name, address, endpoint in wanted:
            try:
                endpoints.append(HttpEndpoint(parse_address(address), endpoint, name))
            except OSError as e:
                for started in endpoints:
                    started.close()
                raise OSError(f"{name} cannot listen on {address}: {e}") from e
            log.info("%s listening on %s", name, address)
        return endpoints

    def _heartbeats(self) -> None:
        """Keep the node's heartbeat (and fencing) going whatever the pass is waiting on."""
        while not self.stopping.wait(HEARTBEAT_TICK_S):
            try:
                self.reconciler.heartbeat()
            except Exception:
                log.exception("heartbeat failed (will retry)")

    def _interval_tick(self) -> None:
        # A pass that just ran (for a heartbeat or a trigger) counts as this interval's pass.
        if time.monotonic() - self._last_pass_at >= self.config.interval / 2:
            self.wake.set()

    def _loop(self) -> None:
        delay = 0.0
        failures = 0
        while not self.stopping.is_set():
            if delay:
                self.wake.wait(delay)
            self.wake.clear()
            if self.stopping.is_set():
                break
            ok = self.pass_once()
            if self.passes == 1:
                sd_notify("READY=1")
            if ok:
                failures, delay = 0, 0.0
                rest = rest_after(self.pass_cpu_s, self.reconciler.executor.backlog())
                if rest and self.stopping.wait(rest):
                    break
                # Settling, crash-loop restarts and CronJobs fall due between intervals: wake for them too.
                due = self.reconciler.next_wake_in()
                self.wake.wait((min(due, REQUEUE_S) if self.acted else due) + 0.05)
            else:
                failures += 1
                # Temporary failures retry with backoff, independent of the interval timer.
                delay = min(RETRY_MIN_S * 2 ** (failures - 1), RETRY_MAX_S)

    def pass_once(self) -> bool:
        """One pass with its errors logged; True when it completed."""
        started = self._last_pass_at = time.monotonic()
        cpu = time.thread_time()
        self.passes += 1
        try:
            report = self.reconciler.run_pass()
        except (PassFailed, GitError) as e:
            log.error("pass failed (will retry): %s", e)
            return self._failed(str(e), crashed=False)
        except Exception as e:
            # A bug must not take the node's workloads down with the daemon: log and retry.
            log.exception("pass crashed (will retry)")
            return self._failed(f"{type(e).__name__}: {e}", crashed=True)
        self.crashes = 0
        # The watchdog is fed from the loop itself, so a hung pass makes systemd restart us.
        sd_notify("WATCHDOG=1")
        took = time.monotonic() - started
        self.pass_cpu_s = time.thread_time() - cpu
        n = len(report.plan.actions)
        self.acted = n > 0
        level = logging.INFO if n or not report.ok else logging.DEBUG
        log.log(level, "pass %d at %s: %d action(s), %.3fs", self.passes, report.revision[:7], n, took)
        self.last_ok = report.ok
        return True

    def _failed(self, why: str, crashed: bool) -> bool:
        self.last_ok = False
        # Heartbeats carry the reason, so `gitops status` shows why this node is not converging.
        self.reconciler.pass_error = why
        self.crashes = self.crashes + 1 if crashed else 0
        if self.crashes < MAX_CRASHES:
            sd_notify("WATCHDOG=1")
        elif self.crashes == MAX_CRASHES:
            log.error(
                "%d passes crashed in a row: no longer feeding the watchdog, systemd will restart us", MAX_CRASHES
            )
        return False
