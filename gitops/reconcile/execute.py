"""The executor: applies planned actions to the engine, one call each, and records outcomes."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gitops.identity import LABEL, ContainerIdentity, Observed, ReplicaId, pod_label_filters
from gitops.model import ContainerSpec, EnvVar
from gitops.reconcile.plan import Action, Instance
from gitops.runtime.base import RunRequest, Runtime, RuntimeFailure, RuntimeUnavailable
from gitops.secrets import SecretMissing, read_secret

log = logging.getLogger(__name__)

# Replicas acted on at once; the engine serialises little and a wave waits for its slowest.
WORKERS = 4
# Image pulls that failed are retried with backoff, not on every pass.
PULL_RETRY_MIN_S = 10.0
PULL_RETRY_MAX_S = 300.0


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


@dataclass
class _PullState:
    failures: int = 0
    next_try: float = 0.0
    message: str = ""


class Executor:
    """Turns actions into engine calls for one node."""

    def __init__(self, runtime: Runtime, node: str, secrets_dir: Path, workers: int = WORKERS):
        self.runtime = runtime
        self.node = node
        self.secrets_dir = secrets_dir
        self.workers = workers
        self._pulls: dict[str, _PullState] = {}
        self._pull_lock = threading.Lock()
        self._reaper = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gitops-reap")
        self._removing: set[str] = set()
        self._removing_lock = threading.Lock()

    def removing(self) -> frozenset[str]:
        """Ids of containers whose background removal has not finished yet."""
        with self._removing_lock:
            return frozenset(self._removing)

    def close(self) -> None:
        """Wait for background removals to finish."""
        self._reaper.shutdown(wait=True)

    def _remove(self, target: Observed) -> None:
        self.runtime.remove(target.id)
        if target.has_emptydir:
            # emptyDir lives as long as its pod: drop the volumes of this replica and spec.
            self.runtime.remove_volumes(pod_label_filters(target.labels))

    def _remove_in_background(self, target: Observed, what: str) -> None:
        def reap() -> None:
            try:
                self._remove(target)
                log.info("%s", what)
            except (RuntimeFailure, RuntimeUnavailable) as e:
                log.warning("%s failed (retried next pass): %s", what, e)
            finally:
                with self._removing_lock:
                    self._removing.discard(target.id)

        with self._removing_lock:
            if target.id in self._removing:
                return
            self._removing.add(target.id)
        self._reaper.submit(reap)

    def execute(self, actions: list[Action]) -> Outcome:
        """Apply ``actions``: in order within a replica, replicas side by side.

        A replica's actions depend on each other (break-before-make, a pod's network owner
        first); different replicas' do not, and a rollout wave is as slow as its slowest node.
        """
        out = Outcome()
        pulled: set[str] = set()
        groups: dict[ReplicaId, list[Action]] = {}
        for action in actions:
            groups.setdefault(action.replica, []).append(action)
        if len(groups) <= 1 or self.workers <= 1:
            for group in groups.values():
                self._run_group(group, out, pulled)
            return out
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gitops-exec") as pool:
            for _ in pool.map(lambda g: self._run_group(g, out, pulled), groups.values()):
                pass
        return out

    def _run_group(self, actions: list[Action], out: Outcome, pulled: set[str]) -> None:
        """One replica's actions in order; the first failure skips the rest."""
        for action in actions:
            rid = action.replica
            try:
                if action.op == "remove" and action.target is not None and action.background:
                    self._remove_in_background(action.target, action.describe())
                    out.removed.add(rid)
                    continue
                if action.op == "remove" and action.target is not None:
                    self._remove(action.target)
                    out.removed.add(rid)
                elif action.op == "start" and action.target is not None:
                    self.runtime.start(action.target.id)
                    out.started.add(rid)
                elif action.op == "stop" and action.target is not None:
                    self.runtime.stop(action.target.id)
                elif action.op == "restart" and action.target is not None:
                    self.runtime.restart(action.target.id)
                    out.started.add(rid)
                elif action.op == "run" and action.instance is not None and action.container is not None:
                    self._ensure_image(action.container, pulled)
                    self.runtime.run(self._request(action.instance, action.container))
                    out.ran.add(rid)
                log.info("%s", action.describe())
            except RuntimeFailure as e:
                log.warning("%s failed: %s", action.describe(), e)
                out.failures[rid] = (e.reason, str(e))
                return

    def _ensure_image(self, spec: ContainerSpec, pulled: set[str]) -> None:
        # One pull at a time: replicas of one image must not race to pull it.
        with self._pull_lock:
            self._ensure_image_locked(spec, pulled)

    def _ensure_image_locked(self, spec: ContainerSpec, pulled: set[str]) -> None:
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
            self.runtime.pull(image)
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
        return RunRequest(
            name=ident.name(first.name),
            image=spec.image,
            labels=ident.labels(),
            entrypoint=list(spec.command) if spec.command is not None else None,
            command=list(spec.args) if spec.args is not None else None,
            env=[f"{e.name}={self._env_value(e)}" for e in spec.env],
            ports={} if pod.host_network else ports,
            nano_cpus=spec.cpu_limit_millis * 1_000_000 if spec.cpu_limit_millis else None,
            mem_limit=spec.memory_limit_bytes,
            binds=self._binds(ident, spec),
            network_mode=network_mode,
            user=spec.user,
            working_dir=spec.working_dir,
            read_only=spec.read_only_root,
            gpu_ids=inst.gpu_ids,
            stop_timeout=pod.termination_grace_s,
        )

    def _env_value(self, env: EnvVar) -> str:
        if env.secret is None:
            return env.value or ""
        try:
            return read_secret(self.secrets_dir, env.secret)
        except SecretMissing as e:
            if env.secret.optional:
                return ""
            raise RuntimeFailure(f"env {env.name}: {e}", "SecretMissing") from e

    def _binds(self, ident: ContainerIdentity, spec: ContainerSpec) -> list[str]:
        binds: list[str] = []
        for m in spec.mounts:
            mode = "ro" if m.read_only else "rw"
            if m.type == "hostPath":
                source = f"{m.source.rstrip('/')}/{m.sub_path}" if m.sub_path else m.source
            else:
                if m.sub_path:
                    raise RuntimeFailure(f"subPath on emptyDir {m.source} is not supported", "RunFailed")
                source = ident.emptydir_volume(m.source)
                self.runtime.ensure_volume(source, {**ident.labels(), LABEL + "volume": m.source})
            binds.append(f"{source}:{m.target}:{mode}")
        return binds
