"""Turning a validated Deployment, DaemonSet, StatefulSet, Job or CronJob into a resolved ``Workload``."""

from __future__ import annotations

import math
from typing import Any

from gitops.manifests import kube, statefulset
from gitops.manifests.issues import Issues
from gitops.manifests.pod import PodContext, convert_pod
from gitops.manifests.scheduling import convert_scheduling
from gitops.manifests.yamlsafe import Path
from gitops.model import CronSpec, FailureRule, JobSpec, Workload, WorkloadKind

_JOB_TEMPLATE = ("spec", "jobTemplate", "spec")


def convert_workload(
    doc: kube.Deployment | kube.DaemonSet | kube.Job | kube.CronJob | kube.StatefulSet,
    file: str,
    line: int | None,
    issues: Issues,
) -> Workload | None:
    """The resolved workload, or None after recording every reason it is invalid."""
    before = len(issues.errors)
    kind: WorkloadKind
    spec_path: Path
    fields: dict[str, Any]
    if isinstance(doc, kube.Deployment):
        kind, spec_path, template = "Deployment", ("spec",), doc.spec.template
        fields = _deployment(doc.spec, issues)
    elif isinstance(doc, kube.DaemonSet):
        kind, spec_path, template = "DaemonSet", ("spec",), doc.spec.template
        fields = _daemon_set(doc.spec, issues)
    elif isinstance(doc, kube.StatefulSet):
        kind, spec_path = "StatefulSet", ("spec",)
        _check_selector(doc.spec.selector, doc.spec.template.metadata.labels, issues)
        template = statefulset.with_claim_volumes(doc.spec, issues)
        fields = statefulset.fields(doc.spec)
    elif isinstance(doc, kube.Job):
        kind, spec_path, template = "Job", ("spec",), doc.spec.template
        job = _job(doc.spec, issues, spec_path)
        fields = {"job": job, "replicas": job.completions}
    else:
        kind, spec_path, template = "CronJob", _JOB_TEMPLATE, doc.spec.job_template.spec.template
        job = _job(doc.spec.job_template.spec, issues, spec_path)
        fields = {"job": job, "replicas": job.completions, "cron": _cron(doc.spec)}
    if isinstance(doc, kube.Deployment | kube.StatefulSet):
        fields["replicas_set"] = "replicas" in doc.spec.model_fields_set
    meta = doc.metadata
    pod_path = (*spec_path, "template", "spec")
    context = PodContext(kind, meta.namespace, template.metadata.labels, template.metadata.annotations)
    pod = convert_pod(template.spec, context, issues, pod_path)
    scheduling = convert_scheduling(template, kind, issues, pod_path)
    if pod is None or len(issues.errors) > before:
        return None
    if isinstance(doc, kube.StatefulSet):
        pod = statefulset.per_replica(pod, doc.spec)
    return Workload(
        kind=kind,
        namespace=meta.namespace,
        name=meta.name,
        file=file,
        line=line,
        labels=meta.labels,
        pod=pod,
        pod_labels=template.metadata.labels,
        port_names={p.name: p.container_port for c in template.spec.containers for p in c.ports if p.name},
        node_selector=template.spec.node_selector,
        scheduling=scheduling,
        **fields,
    )


def _deployment(spec: kube.DeploymentSpec, issues: Issues) -> dict[str, Any]:
    _check_selector(spec.selector, spec.template.metadata.labels, issues)
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        issues.error(("spec", "progressDeadlineSeconds"), "must be greater than minReadySeconds")
    fields: dict[str, Any] = {
        "replicas": spec.replicas,
        "strategy": spec.strategy.type,
        "progress_deadline_s": spec.progress_deadline_seconds,
        "min_ready_s": spec.min_ready_seconds,
    }
    rolling = spec.strategy.rolling_update
    if spec.strategy.type == "Recreate":
        if rolling is not None:
            issues.error(("spec", "strategy", "rollingUpdate"), "must not be set when type is Recreate")
        return fields | {"max_unavailable": spec.replicas, "max_surge": 0}
    rolling = rolling or kube.RollingUpdate()
    path = ("spec", "strategy", "rollingUpdate")
    return fields | _rolling(rolling, "25%", "25%", spec.replicas, issues, path)


def _daemon_set(spec: kube.DaemonSetSpec, issues: Issues) -> dict[str, Any]:
    _check_selector(spec.selector, spec.template.metadata.labels, issues)
    strategy = spec.update_strategy
    if strategy.type == "OnDelete":
        issues.warn(
            ("spec", "updateStrategy", "type"),
            "OnDelete is treated as RollingUpdate: replicas are updated when a commit changes them",
        )
    # Percentages are of nodes, which are unknown here; against one replica they round to one at a time.
    path = ("spec", "updateStrategy", "rollingUpdate")
    rolling = _rolling(strategy.rolling_update or kube.RollingUpdate(), 1, 0, 1, issues, path)
    return {"replicas": 1, "min_ready_s": spec.min_ready_seconds} | rolling


def _rolling(
    rolling: kube.RollingUpdate,
    unavailable_default: int | str,
    surge_default: int | str,
    replicas: int,
    issues: Issues,
    path: Path,
) -> dict[str, Any]:
    unavailable = unavailable_default if rolling.max_unavailable is None else rolling.max_unavailable
    surge = surge_default if rolling.max_surge is None else rolling.max_surge
    if _scaled(unavailable, 100, round_up=False) == 0 and _scaled(surge, 100, round_up=True) == 0:
        issues.error(path, "maxUnavailable and maxSurge cannot both be 0, or the rollout could never progress")
    resolved_unavailable = _scaled(unavailable, replicas, round_up=False)
    resolved_surge = _scaled(surge, replicas, round_up=True)
    # Kubernetes' fencepost: with both rounded to 0, one replica may be unavailable at a time.
    if resolved_unavailable == 0 and resolved_surge == 0:
        resolved_unavailable = 1
    return {"max_unavailable": resolved_unavailable, "max_surge": resolved_surge}


def _scaled(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    exact = int(value[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def _check_selector(selector: kube.LabelSelector, labels: dict[str, str], issues: Issues) -> None:
    path = ("spec", "selector")
    if not selector.match_labels and not selector.match_expressions:
        issues.error(path, "an empty selector is not allowed", "set matchLabels to the template's labels")
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            issues.error(
                (*path, "matchLabels", key),
                f"selects {key}={value} but the template's labels have {key}={labels.get(key, '(none)')}",
                "make spec.selector.matchLabels match spec.template.metadata.labels",
            )
    for index, requirement in enumerate(selector.match_expressions):
        if not requirement.matches(labels):
            issues.error(
                (*path, "matchExpressions", index),
                f"{requirement.key} {requirement.operator} {requirement.values} does not match the template's labels",
            )


def _job(spec: kube.JobSpec, issues: Issues, path: Path) -> JobSpec:
    completions = spec.completions
    parallelism = spec.parallelism or 1
    indexed = spec.completion_mode == "Indexed"
    if completions is None:
        if parallelism > 1 or indexed:
            issues.error(
                (*path, "completionMode" if indexed else "parallelism"),
                f"{'Indexed' if indexed else 'work-queue'} Jobs without completions are not supported",
                "set completions",
            )
        completions = 1
    per_index = spec.backoff_limit_per_index
    if per_index is not None and not indexed:
        issues.error((*path, "backoffLimitPerIndex"), "needs completionMode: Indexed", "remove it or index the Job")
    if spec.max_failed_indexes is not None and per_index is None:
        issues.error((*path, "maxFailedIndexes"), "needs backoffLimitPerIndex", "set backoffLimitPerIndex")
    rules = _failure_rules(spec, per_index is not None, issues, (*path, "podFailurePolicy"))
    return JobSpec(
        completions=completions,
        parallelism=min(parallelism, completions),
        backoff_limit=spec.backoff_limit if per_index is None else per_index,
        active_deadline_s=spec.active_deadline_seconds,
        indexed=indexed,
        suspend=spec.suspend,
        ttl_after_finished_s=spec.ttl_seconds_after_finished,
        max_failed_indexes=spec.max_failed_indexes,
        failure_rules=rules,
    )


def _failure_rules(spec: kube.JobSpec, per_index: bool, issues: Issues, path: Path) -> tuple[FailureRule, ...]:
    """The exit-code rules of a podFailurePolicy; condition rules are checked and dropped."""
    policy = spec.pod_failure_policy
    if policy is None:
        return ()
    if spec.template.spec.restart_policy != "Never":
        issues.error(path, "needs restartPolicy: Never in the pod template", "set template.spec.restartPolicy: Never")
    rules: list[FailureRule] = []
    for index, rule in enumerate(policy.rules):
        rpath = (*path, "rules", index)
        if rule.action == "FailIndex" and not per_index:
            issues.error((*rpath, "action"), "FailIndex needs backoffLimitPerIndex", "set backoffLimitPerIndex")
        if rule.on_exit_codes is not None:
            codes = rule.on_exit_codes
            rules.append(
                FailureRule(
                    action=rule.action,
                    operator=codes.operator,
                    values=tuple(codes.values),
                    container=codes.container_name,
                )
            )
            continue
        # Moved, fenced or suspended replicas are removed by gitops and never count as failures,
        # as an Ignore rule on DisruptionTarget does; no other pod condition is observed here.
        conditions = rule.on_pod_conditions or []
        if rule.action != "Ignore" or any(c.type != "DisruptionTarget" for c in conditions):
            issues.warn(
                (*rpath, "onPodConditions"),
                "ignored: pod conditions are not observed here; disrupted replicas (moved, fenced) never "
                "count as failures, and other conditions never match",
            )
    return tuple(rules)


def _cron(spec: kube.CronJobSpec) -> CronSpec:
    return CronSpec(
        schedule=spec.schedule,
        time_zone=spec.time_zone,
        concurrency_policy=spec.concurrency_policy,
        starting_deadline_s=spec.starting_deadline_seconds,
        successful_history=spec.successful_jobs_history_limit,
        failed_history=spec.failed_jobs_history_limit,
        suspend=spec.suspend,
    )
