"""The executor: applies planned actions to the engine, one call each, and records outcomes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from gitops import downward
from gitops.admission import host_path_source
from gitops.config import START_WORKERS, StorageClass
from gitops.downward import PodValues
from gitops.health import NoAddress, container_address
from gitops.identity import LABEL, ContainerIdentity, Observed, ReplicaId, pod_label_filters
from gitops.manifests.expansion import expand
from gitops.metrics import Metrics
from gitops.model import ContainerSpec, EnvFrom, EnvVar, Hooks, Service, StatefulSpec
from gitops.reconcile import hooks
from gitops.reconcile.files import FileStore
from gitops.reconcile.plan import Action, Instance
from gitops.registryauth import BadPullSecret, pull_auth
from gitops.runtime.base import RunRequest, Runtime, RuntimeFailure, RuntimeUnavailable
from gitops.secrets import SecretMissing, as_text, read_secret, read_secret_files
from gitops.services.dns import search_domains
from gitops.services.env import service_env
from gitops.states import Reason
from gitops.volumes import claim_id, claim_labels, claim_volume, nfs_options, replica_claim, template_claim_labels

log = logging.getLogger(__name__)

# Stops and removals at once: each mostly waits out a grace period, so many may wait together.
STOPPERS = 32
# How long a pass waits for its starts, so the status it publishes shows them.
START_WAIT_S = 10.0
# Image pulls that failed are retried with backoff, not on every pass.
PULL_RETRY_MIN_S = 10.0
PULL_RETRY_MAX_S = 300.0
# How long one engine call waits for an init container to exit; between calls a superseded one is cut short.
INIT_POLL_S = 2.0
# A postStart hook that takes longer fails (the kubelet has no limit, but a worker must come back).
POST_START_LIMIT_S = 120.0


def _index_hostname(inst: Instance) -> str:
    suffix = f"-{inst.replica}"
    return inst.workload.name[: 63 - len(suffix)] + suffix


def identity_of(inst: Instance, spec: ContainerSpec, node: str) -> ContainerIdentity:
    """The identity one container of ``inst`` carries in its labels and name."""
    pod = inst.workload.pod
    role = "" if spec in pod.containers else ("sidecar" if spec.restart_policy == "Always" else "init")
    return ContainerIdentity(
        node=node,
        rid=inst.id,
        spec_hash=inst.spec_hash,
        revision=inst.revision,
        container=spec.name,
        gpu_ids=() if role == "init" else inst.gpu_ids,
        # nfs volumes are the pod's own too: they go with its emptyDirs.
        has_emptydir=any(
            m.type in ("emptyDir", "nfs") for c in (*pod.init_containers, *pod.containers) for m in c.mounts
        ),
        role=role,
        hooks=hooks.encode(spec.hooks),
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


class _Superseded(Exception):
    """The replica's init containers belong to a spec this node no longer runs for it."""


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
        workers: int = START_WORKERS,
        stoppers: int = STOPPERS,
        host_ip: str = "127.0.0.1",
        capacity: tuple[int, int] = (0, 0),
        metrics: Metrics | None = None,
        storage_classes: Mapping[str, StorageClass] | None = None,
    ):
        self.runtime = runtime
        self.metrics = metrics or Metrics(node=node)
        self.node = node
        self.secrets_dir = secrets_dir
        self.files = FileStore(files_dir, secrets_dir)
        # Localhost seccomp profiles: <state_dir>/seccomp/<localhostProfile>, as the kubelet's root/seccomp.
        self.seccomp_dir = seccomp_dir
        # What the downward API gives containers: status.hostIP, and the node's (cpu millis, memory bytes).
        self.host_ip = host_ip
        self.capacity = capacity
        # The revision's Services and the DNS virtual IP serving their names (None: no Services), set each
        # pass: containers started from then on get their variables and resolve their names.
        self.services: Sequence[Service] = ()
        self.dns_ip: str | None = None
        # How claims of each storageClassName get their volumes here (node config), and the revision's
        # claim documents' classes (``namespace/name`` -> class), set each pass.
        self.storage_classes = dict(storage_classes or {})
        self.claim_classes: Mapping[str, str] = {}
        self._workers = workers
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
        # replica -> spec hash of the init containers it is waiting for; and those to cut short
        self._initing: dict[ReplicaId, str] = {}
        self._superseded: set[ReplicaId] = set()

    def busy(self) -> dict[ReplicaId, str]:
        """Replicas whose actions are still in flight, with what they are doing."""
        with self._lock:
            return dict(self._busy)

    def leaving(self) -> frozenset[str]:
        """Ids of containers whose stop and removal has not finished yet."""
        with self._lock:
            return frozenset(self._leaving)

    def backlog(self) -> int:
        """Replicas whose actions wait for a worker: those in flight beyond the start workers."""
        with self._lock:
            return max(0, len(self._busy) - self._workers)

    def idle(self) -> bool:
        """Nothing in flight."""
        with self._lock:
            return not self._busy and not self._leaving

    def supersede(self, desired: Mapping[ReplicaId, str]) -> None:
        """Cut short init containers that wait for a spec no longer ``desired`` (replica -> spec hash).

        An init container may wait forever (for a database, say): a new commit must still replace it.
        """
        with self._lock:
            self._superseded |= {rid for rid, spec in self._initing.items() if desired.get(rid) != spec}

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
                self._leave_all(group)
                continue
            with self._lock:
                if rid in self._busy:
                    continue
                self._busy[rid] = group[0].describe()
            # Creating a pod with init containers mostly waits for them: the wide pool takes it.
            runs = [a for a in group if a.op == "run"]
            waits = any(a.instance is not None and a.instance.workload.pod.init_containers for a in runs)
            pool = self._starters if runs and not waits else self._stoppers
            futures.append(pool.submit(self._run_group, rid, group, pulled))
        return futures

    def _leave_all(self, actions: list[Action]) -> None:
        # Native sidecars stop last, once the app containers they serve are gone.
        apps = [a for a in actions if a.target is not None and a.target.role != "sidecar"]
        gone = [f for f in map(self._leave, apps) if f is not None]
        for a in actions:
            if a not in apps:
                self._leave(a, after=gone)

    def _leave(self, action: Action, after: list[Future[None]] | None = None) -> Future[None] | None:
        target = action.target
        assert target is not None

        def reap() -> None:
            try:
                # The futures waited for were submitted first, so the FIFO pool has picked them up.
                wait(after or [])
                started = time.monotonic()
                self._remove(target)
                self.metrics.action(action.op, "ok")
                self.metrics.reconciled(target.key, time.monotonic() - started)
                log.info("%s", action.describe())
            except (RuntimeFailure, RuntimeUnavailable) as e:
                self.metrics.action(action.op, "failed" if isinstance(e, RuntimeFailure) else "unavailable")
                log.warning("%s failed (retried next pass): %s", action.describe(), e)
            finally:
                with self._lock:
                    self._leaving.discard(target.id)

        with self._lock:
            if target.id in self._leaving:
                return None
            self._leaving.add(target.id)
        return self._stoppers.submit(reap)

    def _remove(self, target: Observed) -> None:
        self.runtime.remove(target.id, hooks.pre_stop(self.runtime, target))
        self.files.remove(target.name)
        if target.has_emptydir:
            # emptyDir lives as long as its pod: drop the volumes of this replica and spec.
            self.runtime.remove_volumes(pod_label_filters(target.labels))

    def _run_group(self, rid: ReplicaId, actions: list[Action], pulled: set[str]) -> None:
        """One replica's actions in order; the first failure skips the rest."""
        out = Outcome()
        inits_done: set[str] = set()
        started = time.monotonic()
        try:
            for action in actions:
                with self._lock:
                    self._busy[rid] = action.describe()
                try:
                    self._apply(action, out, pulled, inits_done)
                    self.metrics.action(action.op, "ok")
                    log.info("%s", action.describe())
                except RuntimeFailure as e:
                    self.metrics.action(action.op, "failed")
                    log.warning("%s failed: %s", action.describe(), e)
                    out.failures[rid] = (e.reason, str(e))
                    return
                except RuntimeUnavailable as e:
                    self.metrics.action(action.op, "unavailable")
                    log.warning("engine unavailable during %s: %s", action.describe(), e)
                    return
                except _Superseded:
                    self.metrics.action(action.op, "superseded")
                    log.info("%s: cut short, its spec is no longer wanted here", action.describe())
                    return
        finally:
            self.metrics.reconciled(rid.key, time.monotonic() - started)
            with self._lock:
                self._busy.pop(rid, None)
                self._done.merge(out)

    def _apply(self, action: Action, out: Outcome, pulled: set[str], inits_done: set[str]) -> None:
        rid, target = action.replica, action.target
        if action.op == "remove" and target is not None:
            self._remove(target)
            out.removed.add(rid)
        elif action.op == "start" and target is not None:
            self.runtime.start(target.id)
            out.started.add(rid)
            self._post_start(target.id, hooks.decode(target))
        elif action.op == "stop" and target is not None:
            self.runtime.stop(target.id, hooks.pre_stop(self.runtime, target))
        elif action.op == "restart" and target is not None:
            self.runtime.restart(target.id, hooks.pre_stop(self.runtime, target))
            out.started.add(rid)
            self._post_start(target.id, hooks.decode(target))
        elif action.op == "run" and action.instance is not None and action.container is not None:
            self._run_inits_before(action.instance, action.container, pulled, inits_done)
            self._pull(action.instance, action.container, pulled, action.describe())
            cid = self._create(action.instance, action.container)
            self._post_start(cid, action.container.hooks)
            out.ran.add(rid)

    def _pull(self, inst: Instance, spec: ContainerSpec, pulled: set[str], then: str) -> None:
        with self._lock:
            self._busy[inst.id] = f"pulling image {spec.image}"
        self._ensure_image(inst, spec, pulled)
        with self._lock:
            self._busy[inst.id] = then

    def _run_inits_before(self, inst: Instance, spec: ContainerSpec, pulled: set[str], done: set[str]) -> None:
        """Run, in order and each to completion, the plain init containers that start before ``spec``."""
        pod = inst.workload.pod
        plain = [c for c in pod.init_containers if c.restart_policy != "Always"]
        for init in pod.init_containers:
            if init.name == spec.name:
                return
            if init.restart_policy == "Always" or init.name in done:
                continue
            self._pull(inst, init, pulled, f"Init:{len(done)}/{len(plain)} running init container {init.name}")
            cid = self.runtime.run(self._request(inst, init))
            code = self._wait_init(inst, cid)
            if code != 0:
                # Kept (exited) for `docker logs` until the replica is tried again.
                reason = Reason.INIT_ERROR if pod.restart_policy == "Never" else Reason.INIT_CRASH_LOOP
                raise RuntimeFailure(f"init container {init.name} exited with code {code}", reason)
            # Its work lives on in the pod's volumes; the container itself is done.
            self.runtime.remove(cid)
            done.add(init.name)

    def _wait_init(self, inst: Instance, cid: str) -> int:
        rid = inst.id
        with self._lock:
            self._initing[rid] = inst.spec_hash
        try:
            while (code := self.runtime.wait(cid, INIT_POLL_S)) is None:
                with self._lock:
                    cut = rid in self._superseded
                if cut:
                    self.runtime.remove(cid, hooks.MIN_STOP_GRACE_S)
                    raise _Superseded()
            return code
        finally:
            with self._lock:
                self._initing.pop(rid, None)
                self._superseded.discard(rid)

    def _post_start(self, cid: str, container_hooks: Hooks | None) -> None:
        if container_hooks is None or container_hooks.post_start is None:
            return
        why = hooks.run_hook(self.runtime, cid, container_hooks.post_start, POST_START_LIMIT_S)
        if why is not None:
            # As the kubelet does: the container is killed and restarted by its restart policy.
            self.runtime.stop(cid, hooks.MIN_STOP_GRACE_S)
            raise RuntimeFailure(f"postStart hook failed: {why}", Reason.FAILED_POST_START)

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

    def _create(self, inst: Instance, spec: ContainerSpec) -> str:
        """Create and start one container; a pod's first container that reads status.podIP gets a fixed address."""
        pod = inst.workload.pod
        if pod.host_network or spec.name != pod.long_running()[0].name or not downward.reads_pod_ip(spec):
            return self.runtime.run(self._request(inst, spec))
        subnet = self.runtime.pod_network(downward.POD_NETWORK)
        for ip in downward.addresses(subnet, identity_of(inst, spec, self.node).name(spec.name)):
            req = self._request(inst, spec, ip)
            try:
                return self.runtime.run(req)
            except RuntimeFailure as e:
                if "in use" not in str(e).lower():
                    raise
                self.runtime.remove(req.name)  # created, but its start found the address taken
        raise RuntimeFailure(f"no free address for the pod on network {downward.POD_NETWORK} ({subnet})", "RunFailed")

    def _request(self, inst: Instance, spec: ContainerSpec, ip: str | None = None) -> RunRequest:
        pod = inst.workload.pod
        first = pod.long_running()[0]
        is_first = spec.name == first.name
        ident = identity_of(inst, spec, self.node)
        ports: dict[str, int | None] = {}
        if is_first:
            # A pod's long-running containers share the first one's network namespace, so it publishes all ports.
            for c in pod.long_running():
                for p in c.ports:
                    ports[f"{p.container_port}/{p.protocol}"] = p.host_port
        network_mode = "host" if pod.host_network else (downward.POD_NETWORK if ip else None)
        # Plain init containers run before that namespace exists: they get their own.
        if not is_first and not pod.host_network and ident.role != "init":
            network_mode = "container:" + identity_of(inst, first, self.node).name(first.name)
        name = ident.name(first.name)
        namespace = inst.workload.namespace
        used = {m.source for m in spec.mounts if m.type == "files"}
        # The daemon cannot give files to fsGroup (it holds no capabilities): they become readable by all instead.
        files_dir = (
            self.files.write(name, namespace, [v for v in pod.files if v.name in used], pod.fs_group is not None)
            if used
            else None
        )
        env, known = self._env(namespace, spec, self._pod_values(inst, spec, ip or "", network_mode))
        job = inst.workload.job
        indexed = job is not None and job.indexed
        stateful = inst.workload.stateful
        if indexed:
            env.append(f"JOB_COMPLETION_INDEX={inst.replica}")
        return RunRequest(
            name=name,
            image=spec.image,
            labels=ident.labels(),
            entrypoint=_finished(spec.command, "command" in spec.node_expanded, known),
            command=_finished(spec.args, "args" in spec.node_expanded, known),
            env=env,
            # As Kubernetes names an Indexed Job's pods; the pod's other containers share the first's.
            hostname=_index_hostname(inst) if (indexed or stateful) and network_mode is None else None,
            ports={} if pod.host_network else ports,
            publish_ip=None if pod.host_network else self.host_ip,
            # Only a pod's own network namespace takes resolver settings; the others share its resolv.conf.
            **(_resolver(namespace, self.dns_ip) if is_first and not pod.host_network and self.dns_ip else {}),
            nano_cpus=spec.cpu_limit_millis * 1_000_000 if spec.cpu_limit_millis else None,
            mem_limit=spec.memory_limit_bytes,
            binds=self._binds(ident, spec, files_dir, stateful),
            network_mode=network_mode,
            ip=ip,
            user=spec.user,
            working_dir=spec.working_dir,
            read_only=spec.read_only_root,
            group_add=() if pod.fs_group is None else (str(pod.fs_group),),
            owned_dirs=(
                ()
                if pod.fs_group is None
                else tuple((m.target, pod.fs_group) for m in spec.mounts if m.type in ("emptyDir", "claim"))
            ),
            gpu_ids=ident.gpu_ids,
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

    def _env(self, namespace: str, spec: ContainerSpec, values: PodValues) -> tuple[list[str], dict[str, str]]:
        """The container's environment, and the values only this node knows (for the spec's templates)."""
        # As in Kubernetes: envFrom sources in order (a later one wins), then env over all of them.
        sourced: dict[str, str] = {}
        for source in spec.env_from:
            sourced.update((source.prefix + k, v) for k, v in self._env_from(namespace, source))
        known: dict[str, str] = {}
        own = []
        for e in spec.env:
            # A template refers only to node values defined before it, as the kubelet expands in order.
            value = expand(e.value or "", known, frozenset()) if e.template else self._env_value(namespace, e, values)
            if e.template or e.field is not None:
                known[e.name] = value
            own.append(f"{e.name}={value}")
        names = {e.name for e in spec.env}
        # Service variables first, as the kubelet puts them: the container's own env and envFrom win.
        services = service_env(self.services, namespace)
        listed = [f"{k}={v}" for k, v in services.items() if k not in names and k not in sourced]
        return listed + [f"{k}={v}" for k, v in sourced.items() if k not in names] + own, known

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

    def _pod_values(self, inst: Instance, spec: ContainerSpec, ip: str, network_mode: str | None) -> PodValues:
        if inst.workload.pod.host_network:
            ip = self.host_ip
        elif not ip and network_mode and network_mode.startswith("container:") and downward.reads_pod_ip(spec):
            # The pod's address is its first container's, which already runs.
            try:
                ip = container_address(self.runtime, network_mode.removeprefix("container:"))
            except NoAddress:
                ip = ""
        cpu, memory = self.capacity
        return PodValues(inst.id, self.node, self.host_ip, ip, cpu, memory)

    def _env_value(self, namespace: str, env: EnvVar, values: PodValues) -> str:
        if env.field is not None:
            return downward.node_value(env.field, values)
        if env.secret is None:
            return env.value or ""
        try:
            return read_secret(self.secrets_dir, namespace, env.secret)
        except SecretMissing as e:
            if env.secret.optional:
                return ""
            raise RuntimeFailure(f"env {env.name}: {e}", "SecretMissing") from e

    def _binds(
        self, ident: ContainerIdentity, spec: ContainerSpec, files_dir: Path | None, stateful: StatefulSpec | None
    ) -> list[str]:
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
            elif m.type == "claim":
                namespace, claim = ident.rid.key.namespace, m.source
                labels = claim_labels(namespace, claim, ident.node)
                storage_class = self.claim_classes.get(claim_id(namespace, claim))
                if m.per_replica:
                    claim = replica_claim(m.source, ident.rid)
                    labels = template_claim_labels(namespace, claim, ident.node, ident.rid, stateful)
                    templates = stateful.claims if stateful else ()
                    storage_class = next((t.storage_class for t in templates if t.name == m.source), None)
                source = claim_volume(namespace, claim, ident.node)
                how = self.storage_classes.get(storage_class or "") or StorageClass()
                # Created where its first user runs; kept until the claim's document (or retention policy) deletes it.
                self.runtime.ensure_volume(source, labels, how.driver, how.options)
            elif m.nfs is not None:
                source = ident.emptydir_volume(m.source)
                options = nfs_options(m.nfs.server, m.nfs.path, m.read_only)
                self.runtime.ensure_volume(source, {**ident.labels(), LABEL + "volume": m.source}, "local", options)
            else:
                if m.sub_path:
                    raise RuntimeFailure(f"subPath on emptyDir {m.source} is not supported", "RunFailed")
                source = ident.emptydir_volume(m.source)
                self.runtime.ensure_volume(source, {**ident.labels(), LABEL + "volume": m.source})
            binds.append(f"{source}:{m.target}:{mode}{',' + m.propagation if m.propagation else ''}")
        return binds


def _resolver(namespace: str, dns_ip: str) -> dict[str, tuple[str, ...]]:
    """Kubernetes' ClusterFirst resolver settings: the Service DNS, the namespace's search list, ndots 5."""
    return {"dns": (dns_ip,), "dns_search": tuple(search_domains(namespace)), "dns_opt": ("ndots:5",)}


def _finished(items: tuple[str, ...] | None, template: bool, known: dict[str, str]) -> list[str] | None:
    """command or args as run: templates (expansion.template) get the values only this node knows."""
    if items is None:
        return None
    return [expand(item, known, frozenset()) for item in items] if template else list(items)
