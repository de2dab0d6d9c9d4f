"""The one place tests and benches build their inputs.

Model level: ``workload()`` (a resolved Workload), ``observed()`` (a container as the engine lists
it) and ``node()`` (a NodeInfo for placement). Text level: ``deployment()`` and ``job()`` write
manifests, bare for the manifest tests or, with ``engine=True``, runnable on the test engine;
``web_app()`` is the HTTP app with a readiness probe the rollout tests and bench deploy.
Nothing here needs Docker.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from gitops.identity import ContainerIdentity, Observed, ReplicaId
from gitops.model import (
    ContainerSpec,
    CronSpec,
    JobSpec,
    PodSpec,
    PortSpec,
    RestartPolicy,
    Workload,
    WorkloadKind,
)
from gitops.placement import NodeInfo

# --- model level ------------------------------------------------------------------------------------------------------


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
    restart_policy: RestartPolicy | None = None,
    pod: PodSpec | None = None,
    job: JobSpec | None = None,
    cron: CronSpec | None = None,
    **fields: Any,
) -> Workload:
    """A one-container workload; ``version`` changes its spec hash, requests are millicores and MiB.

    Jobs and CronJobs get a JobSpec (``completions=replicas``) and ``restartPolicy: Never`` unless
    given, as the loader would resolve them; a CronJob without ``cron`` runs every minute.
    """
    batch = kind in ("Job", "CronJob")
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
        pod = PodSpec(containers=(container,), restart_policy=restart_policy or ("Never" if batch else "Always"))
    if batch and job is None:
        job = JobSpec(completions=replicas)
    if kind == "CronJob" and cron is None:
        cron = CronSpec(schedule="* * * * *")
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
    role: str = "",
    hooks: str = "",
) -> Observed:
    """A container of ``w``'s replica as the engine would list it, labelled as the executor labels it."""
    h = spec_hash or w.spec_hash
    first = w.pod.long_running()[0].name
    name = container or first
    ident = ContainerIdentity(node, ReplicaId(w.key, replica), h, "rev", name, gpu_ids, emptydir, role, hooks)
    return Observed(
        id=f"id-{w.name}-{replica}-{h[:6]}-{name}",
        name=ident.name(first),
        labels=ident.labels(),
        state=state,
        exit_code=exit_code,
        created=created,
    )


def node(
    name: str,
    cpu: int = 4000,
    mem: int = 8192,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    cordoned: bool = False,
) -> NodeInfo:
    """A live node as placement sees it: ``cpu`` millicores, ``mem`` MiB, GPUs named ``GPU-<name>-<i>``."""
    return NodeInfo(
        name=name,
        labels=labels or {},
        cpu_millis=cpu,
        memory_mib=mem,
        gpus=tuple(f"GPU-{name}-{i}" for i in range(gpus)),
        cordoned=cordoned,
    )


# --- manifest text ----------------------------------------------------------------------------------------------------

# Built locally by scripts/docker-up.sh: nothing can be pulled on the test machines.
TEST_IMAGE = "gitops-test/busybox:latest"
# A command that exits promptly on SIGTERM even as PID 1 (busybox sleep would ignore it).
SERVE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]

# The README's reference Deployment; its image cannot be pulled on the test machines.
INFER = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: infer
spec:
  replicas: 3
  selector: { matchLabels: { app: infer } }
  template:
    metadata: { labels: { app: infer } }
    spec:
      containers:
      - name: infer
        image: ephizen/infer:latest
        ports: [{ containerPort: 8000 }]
        resources:
          limits: { cpu: '2', memory: '4Gi' }
"""


def _indent(text: str, spaces: int) -> str:
    """``text`` dedented, then indented by ``spaces``, with a final newline ('' stays '')."""
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces) + "\n" if text.strip() else ""


def _pod(
    grace_s: int | None,
    pod: str,
    image: str,
    pull_policy: str | None,
    command: Sequence[str] | None,
    env: Mapping[str, str] | None,
    container: str,
) -> str:
    """The lines of a pod spec from ``terminationGracePeriodSeconds`` on, at indentation 0; one container ``main``."""
    lines = [f"terminationGracePeriodSeconds: {grace_s}"] if grace_s is not None else []
    lines += [_indent(pod, 0).rstrip("\n"), "containers:", "- name: main", f"  image: {image}"]
    if pull_policy:
        lines.append(f"  imagePullPolicy: {pull_policy}")
    if command is not None:
        lines.append(f"  command: {json.dumps(list(command))}")
    if env is not None:
        lines.append(f"  env: {json.dumps([{'name': k, 'value': v} for k, v in env.items()])}")
    lines.append(_indent(container, 2).rstrip("\n"))
    return "\n".join(line for line in lines if line) + "\n"


def deployment(
    name: str = "web",
    replicas: int | None = None,
    *,
    kind: Literal["Deployment", "DaemonSet"] = "Deployment",
    engine: bool = False,
    image: str | None = None,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    grace_s: int | None = None,
    spec: str = "",
    pod: str = "",
    container: str = "",
) -> str:
    """A Deployment (or DaemonSet) with one container ``main``; ``spec``/``pod``/``container`` are YAML added there.

    Bare, it is the smallest valid manifest (image ``nginx:1.27``, selector ``app: <name>``, no
    optional field), and the manifest tests count on its lines: the ``spec`` lines start at line 7,
    the ``pod`` lines at line 10 and the ``container`` lines at line 13. With ``engine=True`` it runs
    on the test engine: the local test image (``IfNotPresent``: nothing can be pulled), ``SERVE``
    unless ``command`` is given, and a 2 s grace period unless ``grace_s`` is. ``env`` is a list of
    plain values; write other env entries into ``container`` (without ``env``).
    """
    if engine:
        image, command = image or TEST_IMAGE, SERVE if command is None else command
        grace_s = 2 if grace_s is None else grace_s
    head = f"apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
    if replicas is not None:
        head += f"  replicas: {replicas}\n"
    pod_lines = _pod(grace_s, pod, image or "nginx:1.27", "IfNotPresent" if engine else None, command, env, container)
    return (
        head
        + f"  selector: {{matchLabels: {{app: {name}}}}}\n"
        + _indent(spec, 2)
        + "  template:\n"
        + f"    metadata: {{labels: {{app: {name}}}}}\n"
        + "    spec:\n"
        + textwrap.indent(pod_lines, " " * 6)
    )


def config_map(name: str, data: Mapping[str, str], binary: Mapping[str, str] | None = None, namespace: str = "") -> str:
    """A v1 ConfigMap with ``data`` and base64 ``binary`` data; data keys start at line 6 (7 with a namespace)."""
    meta = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n{meta}"
    text += "data:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in data.items()) if data else "data: {}\n"
    if binary:
        text += "binaryData:\n" + "".join(f"  {k}: {v}\n" for k, v in binary.items())
    return text


def claim(name: str, storage: str = "1Gi", spec: str = "") -> str:
    """A v1 PersistentVolumeClaim (ReadWriteOnce); ``spec`` is YAML added to its spec, from line 8."""
    head = f"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n"
    return (
        head + f"  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {storage}}}}}\n" + _indent(spec, 2)
    )


def claim_pod(claim_name: str, mount_path: str = "/data", read_only: bool = False) -> dict[str, str]:
    """``pod`` and ``container`` arguments of ``deployment()`` mounting ``claim_name`` at ``mount_path``."""
    source = f"{{claimName: {claim_name}{', readOnly: true' if read_only else ''}}}"
    return {
        "pod": f"volumes: [{{name: data, persistentVolumeClaim: {source}}}]",
        "container": f"volumeMounts: [{{name: data, mountPath: {mount_path}}}]",
    }


# Stands in for postgres on the test engine: each start inserts a row into the data directory, then serves.
VOTING_DB_ROWS = "/var/lib/postgresql/data/rows"
_VOTING_DB = ["sh", "-c", f'echo "row $POSTGRES_PASSWORD" >> {VOTING_DB_ROWS}; ' + SERVE[2]]


def voting_db(engine: bool = False, password: str = "postgres") -> str:
    """The voting app's postgres Deployment (the corpus file) with a PersistentVolumeClaim for emptyDir, and the claim.

    ``engine=True``: runnable on the test engine, with the test image standing in for postgres.
    """
    from tests.unit.manifests.docs_tables import CORPUS

    doc = yaml.safe_load((CORPUS / "voting__db-deployment.yaml").read_text())
    pod = doc["spec"]["template"]["spec"]
    (volume,) = pod["volumes"]
    assert volume.pop("emptyDir") == {}, "the corpus file changed"
    volume["persistentVolumeClaim"] = {"claimName": "db-data"}
    (db,) = pod["containers"]
    db["env"] = [{"name": "POSTGRES_PASSWORD", "value": password} if e["name"] == "POSTGRES_PASSWORD" else e
                 for e in db["env"]]  # fmt: skip
    if engine:
        db.update(image=TEST_IMAGE, imagePullPolicy="IfNotPresent", command=_VOTING_DB)
        pod["terminationGracePeriodSeconds"] = 1
    return claim("db-data") + "---\n" + yaml.safe_dump(doc, sort_keys=False)


def service(name: str = "web", spec: str = "", *, ports: str = "[{port: 80}]", selector: str | None = None) -> str:
    """A v1 Service selecting ``app: <name>`` (``selector`` "" leaves it out); ``spec`` lines go under spec."""
    lines = f"selector: {{{selector if selector is not None else f'app: {name}'}}}\n" if selector != "" else ""
    lines += f"ports: {ports}\n" if ports else ""
    body = textwrap.indent(lines + spec, "  ")
    return f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{body}"


def autoscaler(
    name: str = "web", target: str = "web", *, min_replicas: int = 1, max_replicas: int = 5, spec: str = ""
) -> str:
    """An autoscaling/v2 HorizontalPodAutoscaler of Deployment ``target``; ``spec`` lines go under spec, from line 9."""
    return (
        f"apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {name}\nspec:\n"
        f"  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}\n"
        f"  minReplicas: {min_replicas}\n  maxReplicas: {max_replicas}\n" + _indent(spec, 2)
    )


def job(
    name: str = "pi",
    *,
    kind: Literal["Job", "CronJob"] = "Job",
    engine: bool = False,
    image: str | None = None,
    command: Sequence[str] = ("sh", "-c", "echo hi"),
    grace_s: int | None = None,
    spec: str = "",
    pod: str = "restartPolicy: Never",
    container: str = "",
) -> str:
    """A Job, or with ``kind='CronJob'`` a CronJob (``spec`` then holds its schedule) around such a Job template.

    ``pod`` defaults to ``restartPolicy: Never`` (pass ``pod=''`` for a Job without one). Bare, the
    container is ``busybox:1.36``; ``engine=True`` makes it runnable on the test engine as for
    ``deployment()`` (the command stays ``echo hi`` unless given).
    """
    if engine:
        image = image or TEST_IMAGE
        grace_s = 2 if grace_s is None else grace_s
    pod_lines = _pod(
        grace_s, pod, image or "busybox:1.36", "IfNotPresent" if engine else None, command, None, container
    )
    template = "template:\n  spec:\n" + textwrap.indent(pod_lines, " " * 4)
    if kind == "CronJob":
        template = "jobTemplate:\n  spec:\n" + textwrap.indent(template, " " * 4)
    head = f"apiVersion: batch/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n"
    return head + _indent(spec, 2) + textwrap.indent(template, " " * 2)


def web_app_command(delay_s: float = 1.0) -> str:
    """Shell that serves /index.html on 8080 after ``delay_s`` (readiness passes late) and stops at once on SIGTERM."""
    delay = f"sleep {delay_s:g}; " if delay_s > 0 else ""
    return (
        f"trap 'exit 0' TERM; mkdir -p /www; echo ok > /www/index.html; {delay}"
        "httpd -p 8080 -h /www; while true; do sleep 0.2; done"
    )


def web_app(
    name: str,
    version: str,
    replicas: int = 6,
    *,
    ready_path: str = "/index.html",
    deadline_s: int = 600,
    delay_s: float = 1.0,
    strategy: str = "",
) -> str:
    """An HTTP Deployment on the test engine: httpd on 8080 after ``delay_s``, readiness GET ``ready_path`` every 1 s.

    ``version`` is its ``VERSION`` env value (change it to roll out a new spec); ``strategy`` is
    YAML for ``spec.strategy``.
    """
    extra = f"progressDeadlineSeconds: {deadline_s}\n" + (f"strategy:\n{_indent(strategy, 2)}" if strategy else "")
    return deployment(
        name,
        replicas,
        engine=True,
        command=["sh", "-c", web_app_command(delay_s)],
        env={"VERSION": version},
        spec=extra,
        container=f"""\
            ports: [{{containerPort: 8080}}]
            readinessProbe:
              httpGet: {{path: {ready_path}, port: 8080}}
              periodSeconds: 1
            """,
    )
