"""The executor: applies planned actions to the engine, one call each, and records outcomes."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from gitops.admission import host_path_source
from gitops.identity import LABEL, ContainerIdentity, Observed, ReplicaId, pod_label_filters
from gitops.model import ContainerSpec, EnvFrom, EnvVar
from gitops.reconcile.files import FileStore
from gitops.reconcile.plan import Action, Instance
from gitops.registryauth import BadPullSecret, pull_auth
from gitops.runtime.base import RunRequest, Runtime, RuntimeFailure, RuntimeUnavailable
from gitops.secrets import SecretMissing, as_text, read_secret, read_secret_files

log = logging.getLogger(__name__)

# Replicas acted on at once; the engine serialises little and a wave waits for its slowest.
WORKERS = 4
# Stops and removals at once: each mostly waits out a grace period, so many may wait together.
STOPPERS = 32
# How long a pass waits for its starts, so the status it publishes shows them.
START_WAIT_S = 10.0
# Image pulls that failed are retried with backoff, not on every pass.
PULL_RETRY_MIN_S = 10.0
PULL_RETRY_MAX_S = 300.0


def _index_hostname(inst: Instance) -> str:
    suffix = f"-{inst.replica}"
    return inst.workload.name[: 63 - len(suffix)] + suffix


def identity_of(inst: Instance, spec: ContainerSpec, node: str) -> ContainerIdentity:
    """The identity one container of ``inst`` carries in its labels and name."""
    pod = inst.workload.pod
    return ContainerIdentity(
        node=node,
        rid=inst.id,
        spec_hash=inst.spec_hash,
        revision=inst.revision,
        container=spec.name,
        gpu_ids=inst.gpu_ids,
        has_emptydir=any(m.type == "emptyDir" for c in pod.containers for m in c.mounts),
    )


@dataclass
class Outcome:
    """What happened to one replica during execution."""

    failures: dict[ReplicaId, tuple[str, str]] = field(default_factory=dict)  # reason, message
    started: set[ReplicaId] = field(default_factory=set)  # restarted in place
    ran: set[ReplicaId] = field(default_factory=set)  # created anew
    removed: set[ReplicaId] = field(default_factory=set)

    def merge(self, other: Outcome) -> None:
        """Add another outcome's results to this one."""
        self.failures.update(other.failures)
        self.started |= other.started
        self.ran |= other.ran
        self.removed |= other.removed


@dataclass
class _PullState:
    failures: int = 0
    next_try: float = 0.0
    message: str = ""


class Executor:
    """Turns actions into engine calls for one node, off the pass: nothing here holds up a heartbeat.

    Each replica's actions run in order on a worker; removals and stops of replicas that are
    leaving run on their own, wider pool, so N containers that use their whole grace period
    stop in about one grace period. The pass waits a little for starts (so its status shows
    them) and never for stops.
    """

    def __init__(
        self,
        runtime: Runtime,
        node: str,
        secrets_dir: Path,
        files_dir: Path,
        seccomp_dir: Path,
        workers: int = WORKERS,
        stoppers: int = STOPPERS,
    ):
        self.runtime = runtime
        self.node = node
        self.secrets_dir = secrets_dir
        self.files = FileStore(files_dir, secrets_dir)
        # Localhost seccomp profiles: <state_dir>/seccomp/<localhostProfile>, as the kubelet's root/seccomp.
        self.seccomp_dir = seccomp_dir
        self._starters = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gitops-exec")
        self._stoppers = ThreadPoolExecutor(max_workers=stoppers, thread_name_prefix="gitops-stop")
        self._lock = threading.Lock()
        # replica -> what its in-flight actions are doing now (for status and the planner)
        self._busy: dict[ReplicaId, str] = {}
        # containers being stopped and removed: still running, no longer planned for
        self._leaving: set[str] = set()
        self._done = Outcome()
        self._pulls: dict[str, _PullState] = {}
        self._image_locks: dict[str, threading.Lock] = {}

    def busy(self) -> dict[ReplicaId, str]:
        """Replicas whose actions are still in flight, with what they are doing."""
        with self._lock:
            return dict(self._busy)

    def leaving(self) -> frozenset[str]:
        """Ids of containers whose stop and removal has not finished yet."""
        with self._lock:
            return frozenset(self._leaving)

    def idle(self) -> bool:
        """Nothing in flight."""
        with self._lock:
            return not self._busy and not self._leaving

    def close(self) -> None:
        """Wait for everything in flight to finish."""
        self._starters.shutdown(wait=True)
        self._stoppers.shutdown(wait=True)

    def collect(self) -> Outcome:
        """Outcomes of the actions finished since the last collect."""
        with self._lock:
            out, self._done = self._done, Outcome()
        return out

    def execute(self, actions: list[Action], wait_s: float = START_WAIT_S) -> Outcome:
        """Submit ``actions`` and wait up to ``wait_s`` for them.

        Returns what finished by then, earlier submissions' outcomes included.
        """
        wait(self.submit(actions), timeout=wait_s)
        return self.collect()

    def submit(self, actions: list[Action]) -> list[Future[None]]:
        """Start ``actions`` (in order within a replica, replicas side by side) without waiting.

        Their outcomes are kept for the next ``collect``; removal-only replicas give no future.
        """
        pulled: set[str] = set()
        groups: dict[ReplicaId, list[Action]] = {}
        for action in actions:
            groups.setdefault(action.replica, []).append(action)
        futures = []
        for rid, group in groups.items():
            if all(a.op == "remove" and a.target is not None for a in group):
                for a in group:
                    self._leave(a)
                continue
            with self._lock:
                if rid in self._busy:
                    continue
                self._busy[rid] = group[0].describe()
            pool = self._starters if any(a.op == "run" for a in group) else self._stoppers
            futures.append(pool.submit(self._run_group, rid, group, pulled))
        return futures

    def _leave(self, action: Action) -> None:
        target = action.target
        assert target is not None

        def reap() -> None:
            try:
                self._remove(target)
                log.info("%s", action.describe())
            except (RuntimeFailure, RuntimeUnavailable) as e:
                log.warning("%s failed (retried next pass): %s", action.describe(), e)
            finally:
                with self._lock:
                    self._leaving.discard(target.id)

        with self._lock:
            if target.id in self._leaving:
                return
            self._leaving.add(target.id)
        self._stoppers.submit(reap)

    def _remove(self, target: Observed) -> None:
        self.runtime.remove(target.id)
        self.files.remove(target.name)
        if target.has_emptydir:
            # emptyDir lives as long as its pod: drop the volumes of this replica and spec.
            self.runtime.remove_volumes(pod_label_filters(target.labels))

    def _run_group(self, rid: ReplicaId, actions: list[Action], pulled: set[str]) -> None:
        """One replica's actions in order; the first failure skips the rest."""
        out = Outcome()
        try:
            for action in actions:
                with self._lock:
                    self._busy[rid] = action.describe()
                try:
                    self._apply(action, out, pulled)
                    log.info("%s", action.describe())
                except RuntimeFailure as e:
                    log.warning("%s failed: %s", action.describe(), e)
                    out.failures[rid] = (e.reason, str(e))
                    return
        except RuntimeUnavailable as e:
            log.warning("engine unavailable during %s: %s", actions[0].describe(), e)
        finally:
            with self._lock:
                self._busy.pop(rid, None)
                self._done.merge(out)

    def _apply(self, action: Action, out: Outcome, pulled: set[str]) -> None:
        rid, target = action.replica, action.target
        if action.op == "remove" and target is not None:
            self._remove(target)
            out.removed.add(rid)
        elif action.op == "start" and target is not None:
            self.runtime.start(target.id)
            out.started.add(rid)
        elif action.op == "stop" and target is not None:
            self.runtime.stop(target.id)
        elif action.op == "restart" and target is not None:
            self.runtime.restart(target.id)
            out.started.add(rid)
        elif action.op == "run" and action.instance is not None and action.container is not None:
            with self._lock:
                self._busy[rid] = f"pulling image {action.container.image}"
            self._ensure_image(action.instance, action.container, pulled)
            with self._lock:
                self._busy[rid] = action.describe()
            self.runtime.run(self._request(action.instance, action.container))
            out.ran.add(rid)

    def _ensure_image(self, inst: Instance, spec: ContainerSpec, pulled: set[str]) -> None:
        # One pull per image at a time: replicas of one image must not race to pull it, and a
        # slow pull of one image must not hold up others.
        with self._lock:
            lock = self._image_locks.setdefault(spec.image, threading.Lock())
        with lock:
            self._ensure_image_locked(inst, spec, pulled)

    def _ensure_image_locked(self, inst: Instance, spec: ContainerSpec, pulled: set[str]) -> None:
        image = spec.image
        if image in pulled:
            return
        present = self.runtime.image_present(image)
        if spec.pull_policy == "Never" or (spec.pull_policy == "IfNotPresent" and present):
            if not present:
                raise RuntimeFailure(f"image {image} is not present and imagePullPolicy is Never", "ErrImageNeverPull")
            return
        state = self._pulls.setdefault(image, _PullState())
        now = time.monotonic()
        if now < state.next_try:
            if present:
                return
            raise RuntimeFailure(f"{state.message} (retry in {state.next_try - now:.0f}s)", "ImagePullFailed")
        try:
            self.runtime.pull(image, self._pull_auth(inst, image))
        except RuntimeFailure as e:
            state.failures += 1
            state.next_try = now + min(PULL_RETRY_MIN_S * 2 ** (state.failures - 1), PULL_RETRY_MAX_S)
            state.message = str(e)
            if not present:
                raise
            # Offline registries must not stop a node from running what it already has.
            log.warning("%s; using the local copy of %s", e, image)
        else:
            self._pulls.pop(image, None)
        pulled.add(image)

    def _request(self, inst: Instance, spec: ContainerSpec) -> RunRequest:
        pod = inst.workload.pod
        first = pod.containers[0]
        is_first = spec.name == first.name
        ident = identity_of(inst, spec, self.node)
        ports: dict[str, int | None] = {}
        if is_first:
            # Containers of a pod share the first one's network namespace, so it publishes all ports.
            for c in pod.containers:
                for p in c.ports:
                    ports[f"{p.container_port}/{p.protocol}"] = p.host_port
        network_mode = "host" if pod.host_network else None
        if not is_first and not pod.host_network:
            network_mode = "container:" + identity_of(inst, first, self.node).name(first.name)
        name = ident.name(first.name)
        namespace = inst.workload.namespace
        used = {m.source for m in spec.mounts if m.type == "files"}
        files_dir = self.files.write(name, namespace, [v for v in pod.files if v.name in used]) if used else None
        env = self._env(namespace, spec)
        job = inst.workload.job
        indexed = job is not None and job.indexed
        if indexed:
            env.append(f"JOB_COMPLETION_INDEX={inst.replica}")
        return RunRequest(
            name=name,
            image=spec.image,
            labels=ident.labels(),
            entrypoint=list(spec.command) if spec.command is not None else None,
            command=list(spec.args) if spec.args is not None else None,
            env=env,
            # As Kubernetes names an Indexed Job's pods; the pod's other containers share the first's.
            hostname=_index_hostname(inst) if indexed and network_mode is None else None,
            ports={} if pod.host_network else ports,
            nano_cpus=spec.cpu_limit_millis * 1_000_000 if spec.cpu_limit_millis else None,
            mem_limit=spec.memory_limit_bytes,
            binds=self._binds(ident, spec, files_dir),
            network_mode=network_mode,
            user=spec.user,
            working_dir=spec.working_dir,
            read_only=spec.read_only_root,
            gpu_ids=inst.gpu_ids,
            stop_timeout=pod.termination_grace_s,
            privileged=spec.security.privileged,
            cap_add=spec.security.cap_add,
            cap_drop=spec.security.cap_drop,
            security_opt=self._security_opt(spec),
            pid_mode="host" if pod.host_pid else None,
            ipc_mode="host" if pod.host_ipc else None,
            # Sidecars join the first container's network namespace, which already has the net.* ones.
            sysctls={k: v for k, v in pod.sysctls if is_first or not k.startswith("net.")},
        )

    def _pull_auth(self, inst: Instance, image: str) -> dict[str, str] | None:
        w = inst.workload
        try:
            return pull_auth(self.secrets_dir, w.namespace, w.pod.image_pull_secrets, image)
        except BadPullSecret as e:
            raise RuntimeFailure(str(e), "ImagePullFailed") from e

    def _env(self, namespace: str, spec: ContainerSpec) -> list[str]:
        # As in Kubernetes: envFrom sources in order (a later one wins), then env over all of them.
        sourced: dict[str, str] = {}
        for source in spec.env_from:
            sourced.update((source.prefix + k, v) for k, v in self._env_from(namespace, source))
        own = [f"{e.name}={self._env_value(namespace, e)}" for e in spec.env]
        names = {e.name for e in spec.env}
        return [f"{k}={v}" for k, v in sourced.items() if k not in names] + own

    def _env_from(self, namespace: str, source: EnvFrom) -> list[tuple[str, str]]:
        if source.secret is None:
            return list(source.values)
        try:
            return [(k, as_text(v)) for k, v in read_secret_files(self.secrets_dir, namespace, source.secret).items()]
        except SecretMissing as e:
            if source.secret.optional:
                return []
            raise RuntimeFailure(f"envFrom: {e}", "SecretMissing") from e

    def _security_opt(self, spec: ContainerSpec) -> tuple[str, ...]:
        opts = ("no-new-privileges",) if spec.security.no_new_privileges else ()
        if spec.security.seccomp == "Unconfined":
            return (*opts, "seccomp=unconfined")
        if spec.security.seccomp == "Localhost":
            profile = spec.security.seccomp_profile or ""
            where = self.seccomp_dir / profile
            try:
                # Docker's API takes the profile itself, not a path (the CLI reads the file too).
                return (*opts, "seccomp=" + where.read_text())
            except OSError as e:
                raise RuntimeFailure(
                    f"seccomp profile {profile} is not on this node ({where}: {e.strerror})", "SeccompProfileMissing"
                ) from e
        return opts

    def _env_value(self, namespace: str, env: EnvVar) -> str:
        if env.secret is None:
            return env.value or ""
        try:
            return read_secret(self.secrets_dir, namespace, env.secret)
        except SecretMissing as e:
            if env.secret.optional:
                return ""
            raise RuntimeFailure(f"env {env.name}: {e}", "SecretMissing") from e

    def _binds(self, ident: ContainerIdentity, spec: ContainerSpec, files_dir: Path | None) -> list[str]:
        binds: list[str] = []
        for m in spec.mounts:
            mode = "ro" if m.read_only else "rw"
            if m.type == "files":
                assert files_dir is not None  # written by _request for every files mount
                volume = files_dir / m.source
                source = str(volume / m.sub_path if m.sub_path else volume)
            # A hostPath binds the path admission judged (gitops/admission.py), with no '..' left in it.
            elif (host := host_path_source(m)) is not None:
                source = host
            else:
                if m.sub_path:
                    raise RuntimeFailure(f"subPath on emptyDir {m.source} is not supported", "RunFailed")
                source = ident.emptydir_volume(m.source)
                self.runtime.ensure_volume(source, {**ident.labels(), LABEL + "volume": m.source})
            binds.append(f"{source}:{m.target}:{mode}{',' + m.propagation if m.propagation else ''}")
        return binds
