"""parse_file and combine: the Kubernetes subset resolved into workloads, and every error reported."""

from __future__ import annotations

import pytest

from gitops.manifests.load import CLUSTER_KEY, combine, is_manifest_path, parse_file
from gitops.model import EnvVar, FileResult, ManifestError, Mount, PortSpec, SecretRef, Workload
from gitops.scheduling import Toleration
from tests.builders import INFER, deployment, job


def parse(text: str, file: str = "a.yaml") -> FileResult:
    return parse_file(file, text.encode())


def only(result: FileResult) -> Workload:
    assert result.errors == (), [str(e) for e in result.errors]
    assert len(result.workloads) == 1
    return result.workloads[0]


def errors(data: str) -> list[ManifestError]:
    result = parse(data, "app.yaml")
    assert result.workloads == ()
    assert result.errors
    return list(result.errors)


def one_error(data: str, field: str) -> ManifestError:
    found = [e for e in errors(data) if e.field == field]
    assert found, [str(e) for e in errors(data)]
    return found[0]


def test_the_reference_deployment() -> None:
    workload = only(parse(INFER, "infer.yaml"))
    container = workload.pod.containers[0]
    assert (workload.key, workload.replicas) == ("default/Deployment/infer", 3)
    assert (container.cpu_limit_millis, container.memory_limit_bytes) == (2000, 4294967296)
    assert (container.cpu_request_millis, container.memory_request_bytes) == (2000, 4294967296)
    assert container.pull_policy == "Always"
    assert container.ports == (PortSpec(container_port=8000),)
    assert (workload.max_unavailable, workload.max_surge, workload.progress_deadline_s) == (0, 1, 600)
    assert (workload.file, workload.line) == ("infer.yaml", 1)


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("reg:5000/team/app", "Always"),
        ("reg:5000/app:v2", "IfNotPresent"),
        ("app@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_default_pull_policy(image: str, policy: str) -> None:
    assert only(parse(deployment(image=image))).pod.containers[0].pull_policy == policy


def test_container_fields_are_mapped() -> None:
    data = deployment(
        container="""
        imagePullPolicy: Never
        command: [python, -m, app]
        args: ["--model=$(MODEL)", "$$(KEEP)", "$(UNDEFINED)"]
        workingDir: /srv
        env:
        - {name: MODEL, value: llama}
        - {name: PATH_TO, value: "/m/$(MODEL)"}
        - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: hf-secret, key: token, optional: true}}
        ports:
        - {name: http, containerPort: 8080, hostPort: 80, protocol: UDP}
        resources:
          requests: {cpu: 250m, memory: 64Mi}
          limits: {cpu: 500m, memory: 128Mi, nvidia.com/gpu: 2}
        readinessProbe:
          httpGet: {path: /ready, port: http, httpHeaders: [{name: X-A, value: b}]}
          periodSeconds: 5
        livenessProbe: {tcpSocket: {port: 8080}, initialDelaySeconds: 3}
        startupProbe: {exec: {command: [cat, /ok]}}
        securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}
        volumeMounts:
        - {name: cache, mountPath: /cache}
        - {name: logs, mountPath: /logs, readOnly: true, subPath: app}
        """,
        pod="""
        securityContext: {runAsGroup: 2000}
        terminationGracePeriodSeconds: 5
        nodeSelector: {gpu: "true"}
        hostNetwork: false
        volumes:
        - {name: cache, emptyDir: {}}
        - {name: logs, hostPath: {path: /var/log/app, type: DirectoryOrCreate}}
        """,
    )
    workload = only(parse(data))
    c = workload.pod.containers[0]
    assert (c.pull_policy, c.command, c.working_dir) == ("Never", ("python", "-m", "app"), "/srv")
    assert c.args == ("--model=llama", "$(KEEP)", "$(UNDEFINED)")
    assert c.env == (
        EnvVar(name="MODEL", value="llama"),
        EnvVar(name="PATH_TO", value="/m/llama"),
        EnvVar(name="NS", value="default"),
        EnvVar(name="TOKEN", secret=SecretRef(name="hf-secret", key="token", optional=True)),
    )
    assert c.ports == (PortSpec(container_port=8080, host_port=80, protocol="udp"),)
    assert (c.cpu_request_millis, c.cpu_limit_millis, c.memory_request_bytes, c.gpus) == (250, 500, 64 << 20, 2)
    assert c.readiness is not None and c.readiness.port == 8080 and c.readiness.period_s == 5
    assert c.readiness.headers == (("X-A", "b"),)
    assert c.liveness is not None and (c.liveness.handler, c.liveness.initial_delay_s) == ("tcpSocket", 3)
    assert c.startup is not None and (c.startup.command, c.startup.timeout_s, c.startup.failure_threshold) == (
        ("cat", "/ok"),
        1,
        3,
    )
    assert (c.user, c.read_only_root) == ("1000:2000", True)
    assert c.mounts == (
        Mount(target="/cache", type="emptyDir", source="cache"),
        Mount(target="/logs", type="hostPath", source="/var/log/app", read_only=True, sub_path="app"),
    )
    assert (workload.pod.termination_grace_s, workload.node_selector) == (5, {"gpu": "true"})
    assert workload.exclusive


@pytest.mark.parametrize(
    ("strategy", "replicas", "unavailable", "surge"),
    [
        ("", 4, 1, 1),
        ("", 10, 2, 3),
        ("strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 2}}", 4, 0, 2),
        ("strategy: {rollingUpdate: {maxUnavailable: '50%', maxSurge: '0%'}}", 3, 1, 0),
        ("strategy: {rollingUpdate: {maxUnavailable: '10%', maxSurge: 0}}", 3, 1, 0),
        ("strategy: {type: Recreate}", 3, 3, 0),
    ],
)
def test_rollout_strategy_is_resolved(strategy: str, replicas: int, unavailable: int, surge: int) -> None:
    workload = only(parse(deployment(spec=f"replicas: {replicas}\n{strategy}")))
    assert (workload.max_unavailable, workload.max_surge) == (unavailable, surge)


def test_rollout_that_cannot_progress_is_refused() -> None:
    error = one_error(
        deployment(spec="strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: '0%'}}"), "spec.strategy.rollingUpdate"
    )
    assert "both be 0" in error.message


def test_daemon_set() -> None:
    data = b"""\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: ops}
spec:
  selector: {matchExpressions: [{key: app, operator: In, values: [agent]}, {key: old, operator: DoesNotExist}]}
  updateStrategy: {type: OnDelete}
  template:
    metadata: {labels: {app: agent}}
    spec:
      tolerations: [{operator: Exists}]
      containers: [{name: agent, image: "agent:1"}]
"""
    result = parse_file("ds.yaml", data)
    workload = only(result)
    assert (workload.key, workload.replicas, workload.max_unavailable) == ("ops/DaemonSet/agent", 1, 1)
    assert any("OnDelete" in w for w in result.warnings)
    assert workload.scheduling.tolerations == (Toleration(operator="Exists"),)


def test_job_and_cron_job() -> None:
    workload = only(parse(job(spec="completions: 5\nparallelism: 2\nbackoffLimit: 1"), "j.yaml"))
    assert workload.job is not None
    assert (workload.replicas, workload.job.completions, workload.job.parallelism) == (5, 5, 2)
    assert (workload.job.backoff_limit, workload.pod.restart_policy) == (1, "Never")
    cron = only(parse(job(kind="CronJob", spec='schedule: "*/5 * * * *"\ntimeZone: Europe/Berlin'), "c.yaml"))
    assert cron.cron is not None and cron.job is not None
    assert (cron.cron.schedule, cron.cron.time_zone, cron.job.backoff_limit) == ("*/5 * * * *", "Europe/Berlin", 6)


@pytest.mark.parametrize(
    ("volume", "mode", "propagation", "error"),
    [
        ("hostPath: {path: /sys}", "HostToContainer", "rslave", None),
        ("hostPath: {path: /sys}", "None", None, None),
        ("hostPath: {path: /sys}", "Bidirectional", None, "needs a privileged container"),
        ("emptyDir: {}", "HostToContainer", None, "needs a hostPath volume"),
    ],
)
def test_mount_propagation(volume: str, mode: str, propagation: str | None, error: str | None) -> None:
    text = deployment(
        pod=f"volumes: [{{name: v, {volume}}}]",
        container=f"volumeMounts: [{{name: v, mountPath: /v, mountPropagation: {mode}}}]",
    )
    if error is None:
        [mount] = only(parse(text)).pod.containers[0].mounts
        assert mount.propagation == propagation
    else:
        assert error in str(one_error(text, "spec.template.spec.containers[0].volumeMounts[0].mountPropagation"))


def test_fs_group_reaches_the_pod_spec() -> None:
    pod = only(parse(deployment(pod="securityContext: {fsGroup: 2000}\nvolumes: [{name: v, emptyDir: {}}]"))).pod
    assert pod.fs_group == 2000


def test_retired_cron_job_version_is_read_as_batch_v1_with_a_warning() -> None:
    text = job(kind="CronJob", spec='schedule: "@hourly"').replace("batch/v1", "batch/v1beta1", 1)
    result = parse(text, "c.yaml")
    assert only(result).cron is not None
    assert any("batch/v1beta1 CronJob was removed" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("schedule", ["@hourly", "0 0 * * MON-FRI", "30 */2 1,15 JAN-jun ?", "*/10 * * * * *"])
def test_valid_schedules(schedule: str) -> None:
    only(parse(job(kind="CronJob", spec=f'schedule: "{schedule}"'), "c.yaml"))


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ('schedule: "* * *"', "spec.schedule", "has 3 fields"),
        ('schedule: "61 * * * *"', "spec.schedule", "minute '61' is out of range"),
        ('schedule: "@fortnightly"', "spec.schedule", "not one of"),
        ('schedule: "TZ=UTC * * * * *"', "spec.schedule", "spec.timeZone"),
        ('schedule: "* * * * *"\ntimeZone: Mars/Olympus', "spec.timeZone", "time zone"),
        ('schedule: "* * * * *"\nconcurrencyPolicy: Sometimes', "spec.concurrencyPolicy", "'Forbid'"),
    ],
)
def test_bad_cron_jobs(spec: str, field: str, words: str) -> None:
    assert words in one_error(job(kind="CronJob", spec=spec), field).message


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (deployment(name="Web_App"), "metadata.name", "e.g. 'web-app'"),
        (deployment(name="a" * 64), "metadata.name", "at most 63"),
        (deployment(spec="replicas: 1e9"), "spec.replicas", "integer"),
        (deployment(spec="replicas: 1000000000"), "spec.replicas", "less than or equal to 1000"),
        (deployment(spec="replicas: -1"), "spec.replicas", "greater than or equal to 0"),
        (deployment(spec="replicas: '3'"), "spec.replicas", "integer"),
        (
            deployment(container="resources: {limits: {memory: -1}}"),
            "spec.template.spec.containers[0].resources.limits.memory",
            "negative",
        ),
        (
            deployment(container="resources: {limits: {cpu: abc}}"),
            "spec.template.spec.containers[0].resources.limits.cpu",
            "not a quantity",
        ),
        (
            deployment(container="resources: {requests: {cpu: 2}, limits: {cpu: 1}}"),
            "spec.template.spec.containers[0].resources.requests.cpu",
            "above the limit",
        ),
        (
            deployment(container='resources: {limits: {"nvidia.com/gpu": 0.5}}'),
            'spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]',
            "whole number",
        ),
        (deployment(container="env: [{name: A, value: 1}]"), "spec.template.spec.containers[0].env[0].value", "string"),
        (deployment(spec="selector: {matchLabels: {app: other}}"), "spec.selector.matchLabels.app", "app=other"),
        (deployment(pod="restartPolicy: Never"), "spec.template.spec.restartPolicy", "must be Always"),
        (job(pod=""), "spec.template.spec.restartPolicy", "OnFailure or Never"),
        (
            deployment(container="volumeMounts: [{name: data, mountPath: /d}]"),
            "spec.template.spec.containers[0].volumeMounts[0].name",
            "no volume named 'data'",
        ),
        (
            deployment(container="readinessProbe: {httpGet: {port: web}}"),
            "spec.template.spec.containers[0].readinessProbe.httpGet.port",
            "no container port is named 'web'",
        ),
        (
            deployment(container="securityContext: {privileged: true, allowPrivilegeEscalation: false}"),
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
            "cannot be false with privileged",
        ),
        (
            deployment(container="securityContext: {capabilities: {add: [NET_ADMN]}}"),
            "spec.template.spec.containers[0].securityContext.capabilities.add[0]",
            "not a Linux capability",
        ),
        (
            deployment(container="securityContext: {seccompProfile: {type: Localhost}}"),
            "spec.template.spec.containers[0].securityContext.seccompProfile",
            "localhostProfile is required",
        ),
        (
            deployment(pod="securityContext: {sysctls: [{name: vm.swappiness, value: '10'}]}"),
            "spec.template.spec.securityContext.sysctls[0].name",
            "not namespaced",
        ),
        (
            deployment(
                pod="hostNetwork: true\nsecurityContext: {sysctls: [{name: net.core.somaxconn, value: '1024'}]}"
            ),
            "spec.template.spec.securityContext.sysctls[0].name",
            "host namespace",
        ),
        (
            deployment(pod="volumes: [{name: c, downwardAPI: {items: []}}]"),
            "spec.template.spec.volumes[0].downwardAPI",
            "downwardAPI volumes are not supported",
        ),
        (
            deployment(pod="initContainers: [{name: i, image: busybox, readinessProbe: {exec: {command: [x]}}}]"),
            "spec.template.spec.initContainers[0].readinessProbe",
            "takes no probes or hooks",
        ),
        (
            deployment(pod="initContainers: [{name: i, image: busybox, restartPolicy: OnFailure}]"),
            "spec.template.spec.initContainers[0].restartPolicy",
            "only restartPolicy: Always (a native sidecar) is supported",
        ),
        (
            deployment(container="restartPolicy: Always"),
            "spec.template.spec.containers[0].restartPolicy",
            "only init containers take restartPolicy Always",
        ),
        (
            deployment(pod="affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{}]}}"),
            "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelector",
        ),
        (
            deployment(pod="volumes: [{name: c, projected: {sources: [{serviceAccountToken: {path: t}}]}}]"),
            "spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken",
            "no service account tokens",
        ),
        (
            deployment(container="env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.phase}}}]"),
            "spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
            "supported fieldRefs are metadata.name",
        ),
        (
            deployment(container="env: [{name: A, valueFrom: {resourceFieldRef: {resource: limits.nvidia.com/gpu}}}]"),
            "spec.template.spec.containers[0].env[0].valueFrom.resourceFieldRef.resource",
            "only limits.cpu, limits.memory",
        ),
        (
            deployment(
                pod="initContainers: [{name: i, image: busybox, env: [{name: IP, "
                "valueFrom: {fieldRef: {fieldPath: status.podIP}}}]}]"
            ),
            "spec.template.spec.initContainers[0].env",
            "status.podIP has no value for it",
        ),
        (
            deployment(container="lifecycle: {preStop: {tcpSocket: {port: 80}}}"),
            "spec.template.spec.containers[0].lifecycle.preStop.tcpSocket",
            "tcpSocket hooks are deprecated",
        ),
        (
            deployment(container="lifecycle: {postStart: {exec: {command: [x]}, sleep: {seconds: 1}}}"),
            "spec.template.spec.containers[0].lifecycle.postStart",
            "exactly one of exec, httpGet and sleep",
        ),
        (
            deployment().replace("- name: main", "- name: Bad_Name"),
            "spec.template.spec.containers[0].name",
            "RFC 1123",
        ),
        (
            deployment(container="env: [{name: S, valueFrom: {secretKeyRef: {name: s, key: k}}}]\nargs: [$(S)]"),
            "spec.template.spec.containers[0].args[0]",
            "secret",
        ),
        (job(spec="parallelism: 2"), "spec.parallelism", "set completions"),
        (
            deployment(container="livenessProbe: {exec: {command: [x]}, successThreshold: 2}"),
            "spec.template.spec.containers[0].livenessProbe.successThreshold",
            "must be 1",
        ),
        (job(spec="podFailurePolicy: {rules: [{action: Ignore}]}"), "spec.podFailurePolicy.rules[0]", "exactly one"),
        ("apiVersion: batch/v2alpha1\nkind: CronJob\nmetadata: {name: x}\n", "apiVersion", "not supported"),
    ],
)
def test_refusals_name_the_field(data: str, field: str, words: str) -> None:
    error = one_error(data, field)
    assert error.line is not None
    assert words in str(error)


def test_typo_gets_a_hint_and_the_right_line() -> None:
    error = one_error(deployment(container="imagee: nginx"), "spec.template.spec.containers[0].imagee")
    assert error.message == "unknown field 'imagee'"
    assert error.hint == "did you mean 'image'?"
    assert error.line == 13


def test_all_errors_of_a_file_are_reported_with_their_lines() -> None:
    data = b"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        resources:
          limits:
            memory: -1
        portss: []
---
apiVersion: batch/v1
kind: Job
metadata: {name: Bad_Job}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: a, image: b}]
"""
    result = parse_file("app.yaml", data)
    found = {(e.line, e.field) for e in result.errors}
    assert found == {
        (6, "spec.replicas"),
        (16, "spec.template.spec.containers[0].resources.limits.memory"),
        (17, "spec.template.spec.containers[0].portss"),
        (21, "metadata.name"),
    }
    assert result.invalid_keys == ("default/Deployment/web", "default/Job/Bad_Job")
    hint = next(e.hint for e in result.errors if e.line == 17)
    assert hint == "did you mean 'ports'?"


def test_a_bad_document_does_not_block_a_good_one() -> None:
    bad = deployment(name="api", spec="replicas: many")
    result = parse(deployment() + "---\n" + bad, "app.yaml")
    assert [w.key for w in result.workloads] == ["default/Deployment/web"]
    assert result.invalid_keys == ("default/Deployment/api",)
    assert result.errors[0].line == 20 and not result.unreadable


def test_other_kinds_are_skipped_with_one_warning_each() -> None:
    data = b"""\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec: {rules: [], bogus: field}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cfg}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: x}}
"""
    result = parse_file("svc.yaml", data)
    assert result.errors == () and result.workloads == ()
    assert len(result.warnings) == 3
    assert result.warnings[0].startswith("svc.yaml:1: skipped Ingress (networking.k8s.io/v1)")
    assert result.warnings[2].startswith("svc.yaml:14: items[0]: skipped Namespace")


def test_list_items_are_workloads_too() -> None:
    item = deployment().replace("\n", "\n    ")
    result = parse(f"apiVersion: v1\nkind: List\nitems:\n  - {item}", "list.yaml")
    assert only(result).line == 4


def test_cluster_document() -> None:
    data = b"apiVersion: gitops/v1\nkind: Cluster\nspec: {heartbeatSeconds: 5, cordoned: [node-3]}\n"
    result = parse_file("cluster.yaml", data)
    assert result.cluster is not None and result.errors == ()
    assert (result.cluster.heartbeat_seconds, result.cluster.node_timeout_seconds) == (5, 30)
    assert result.cluster.cordoned == ("node-3",)
    bad = parse_file("cluster.yaml", b"apiVersion: gitops/v1\nkind: Cluster\nspec: {heartbeatSeconds: 20}\n")
    assert bad.cluster is None and bad.invalid_keys == (CLUSTER_KEY,)
    assert "twice heartbeatSeconds" in bad.errors[0].message


def test_duplicate_key_in_one_document() -> None:
    result = parse(deployment(spec="replicas: 1\nreplicas: 2"))
    assert result.invalid_keys == ("default/Deployment/web",)
    assert [(e.line, e.message) for e in result.errors] == [(8, "duplicate key 'replicas' (first at line 7)")]


def test_combine_reports_duplicates_and_extra_clusters() -> None:
    cluster = "apiVersion: gitops/v1\nkind: Cluster\n"
    results = {
        "b.yaml": parse(deployment(), "b.yaml"),
        "a.yaml": parse(deployment() + "---\n" + cluster, "a.yaml"),
        "c.yaml": parse(deployment(name="api") + "---\n" + cluster, "c.yaml"),
        "d.yaml": parse_file("d.yaml", b"\xff\xfe"),
    }
    merged = combine(results)
    assert [w.key for w in merged.workloads] == ["default/Deployment/api"]
    duplicate = [e for e in merged.errors if "more than once" in e.message]
    assert {e.file for e in duplicate} == {"a.yaml", "b.yaml"}
    assert "a.yaml:1, b.yaml:1" in duplicate[0].message
    assert {e.file for e in merged.errors if "more than one Cluster" in e.message} == {"a.yaml", "c.yaml"}
    assert set(merged.invalid_keys) == {"default/Deployment/web", CLUSTER_KEY}
    assert merged.unreadable_files == ("d.yaml",)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app.yaml", True),
        ("apps/web.yml", True),
        ("a/b/c.yaml", True),
        (".github/ci.yaml", False),
        ("apps/.hidden/x.yaml", False),
        ("apps/.x.yaml", False),
        ("README.md", False),
        ("yaml", False),
    ],
)
def test_is_manifest_path(path: str, expected: bool) -> None:
    assert is_manifest_path(path) is expected
