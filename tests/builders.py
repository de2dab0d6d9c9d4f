"""The one place tests build resolved workloads and observed containers (model level)."""

from __future__ import annotations

from typing import Any

from gitops.identity import ContainerIdentity, Observed, ReplicaId
from gitops.model import ContainerSpec, CronSpec, JobSpec, PodSpec, PortSpec, Workload, WorkloadKind


def workload(
    name: str = "web",
    replicas: int = 1,
    *,
    kind: WorkloadKind = "Deployment",
    namespace: str = "default",
    version: str = "a",
    cpu: int = 0,
    mem: int = 0,
    gpus: int = 0,
    host_port: int | None = None,
    selector: dict[str, str] | None = None,
    pod: PodSpec | None = None,
    job: JobSpec | None = None,
    cron: CronSpec | None = None,
    **fields: Any,
) -> Workload:
    """A one-container workload; ``version`` changes its spec hash, requests are millicores and MiB."""
    if pod is None:
        container = ContainerSpec(
            name="main",
            image="img",
            args=(version,),
            cpu_request_millis=cpu,
            memory_request_bytes=mem * 1024 * 1024,
            gpus=gpus,
            ports=(PortSpec(container_port=80, host_port=host_port),) if host_port else (),
        )
        pod = PodSpec(containers=(container,))
    if kind in ("Job", "CronJob") and job is None:
        job = JobSpec(completions=replicas)
    return Workload(
        kind=kind,
        namespace=namespace,
        name=name,
        file=f"{name}.yaml",
        replicas=replicas,
        pod=pod,
        node_selector=selector or {},
        job=job,
        cron=cron,
        **fields,
    )


def observed(
    w: Workload,
    replica: int,
    state: str = "running",
    *,
    spec_hash: str | None = None,
    exit_code: int | None = None,
    container: str | None = None,
    node: str = "n1",
    created: int = 0,
    gpu_ids: tuple[str, ...] = (),
    emptydir: bool = False,
) -> Observed:
    """A container of ``w``'s replica as the engine would list it, labelled as the executor labels it."""
    h = spec_hash or w.spec_hash
    name = container or w.pod.containers[0].name
    ident = ContainerIdentity(node, ReplicaId(w.key, replica), h, "rev", name, gpu_ids, emptydir)
    return Observed(
        id=f"id-{w.name}-{replica}-{h[:6]}-{name}",
        name=ident.name(w.pod.containers[0].name),
        labels=ident.labels(),
        state=state,
        exit_code=exit_code,
        created=created,
    )
