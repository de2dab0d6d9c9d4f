"""Turning a validated HorizontalPodAutoscaler (autoscaling/v2 or v1) into a resolved ``model.Autoscaler``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from gitops.manifests import kube, quantity
from gitops.manifests.issues import Issues
from gitops.model import (
    SCALE_DOWN_DEFAULT,
    SCALE_UP_DEFAULT,
    Autoscaler,
    ManifestError,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
    Workload,
)

# Kubernetes' target when an autoscaler names no metric (and autoscaling/v1's default).
DEFAULT_CPU_UTILIZATION = 80


def convert_autoscaler(
    doc: kube.HorizontalPodAutoscaler | kube.HorizontalPodAutoscalerV1, file: str, line: int | None, issues: Issues
) -> Autoscaler | None:
    """The resolved autoscaler, or None after recording every reason it is invalid."""
    before = len(issues.errors)
    spec = doc.spec
    scale_up, scale_down = SCALE_UP_DEFAULT, SCALE_DOWN_DEFAULT
    if isinstance(spec, kube.HorizontalPodAutoscalerSpecV1):
        metrics = [_cpu(spec.target_cpu_utilization_percentage or DEFAULT_CPU_UTILIZATION)]
    else:
        metrics = [] if spec.metrics else [_cpu(DEFAULT_CPU_UTILIZATION)]
        for index, metric in enumerate(spec.metrics or []):
            # MetricSpec refuses every type but Resource and Pods, each carrying its source.
            if metric.type == "Pods":
                assert metric.pods is not None
                found = _pods(metric.pods, ("spec", "metrics", index, "pods", "target"), issues)
            else:
                assert metric.resource is not None
                found = _metric(metric.resource, ("spec", "metrics", index, "resource", "target"), issues)
            metrics += [found] if found is not None else []
        if spec.behavior is not None:
            scale_up = _rules(spec.behavior.scale_up, SCALE_UP_DEFAULT)
            scale_down = _rules(spec.behavior.scale_down, SCALE_DOWN_DEFAULT)
    if len(issues.errors) > before:
        return None
    return Autoscaler(
        namespace=doc.metadata.namespace,
        name=doc.metadata.name,
        file=file,
        line=line,
        target_kind="StatefulSet" if spec.scale_target_ref.kind == "StatefulSet" else "Deployment",
        target_name=spec.scale_target_ref.name,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        metrics=tuple(metrics),
        scale_up=scale_up,
        scale_down=scale_down,
    )


def _cpu(percent: int) -> MetricTarget:
    return MetricTarget(resource="cpu", utilization=percent)


def _metric(source: kube.ResourceMetricSource, path: tuple[str | int, ...], issues: Issues) -> MetricTarget | None:
    resource = "cpu" if source.name == "cpu" else "memory"
    target = source.target
    if target.type == "Utilization":
        return MetricTarget(resource=resource, utilization=target.average_utilization)
    parse = quantity.cpu_millis if resource == "cpu" else quantity.memory_bytes
    average = _average(target.average_value, parse, path, issues)
    return None if average is None else MetricTarget(resource=resource, average=average)


def _pods(source: kube.PodsMetricSource, path: tuple[str | int, ...], issues: Issues) -> MetricTarget | None:
    name = "gpu_utilization" if source.metric.name == "gpu_utilization" else "requests_per_second"
    average = _average(source.target.average_value, quantity.milli_units, path, issues)
    return None if average is None else MetricTarget(resource=name, average=average)


def _average(value: object, parse: Callable[[object], int], path: tuple[str | int, ...], issues: Issues) -> int | None:
    """An AverageValue target in the metric's unit; None after recording why it is invalid."""
    try:
        average = parse(value)
    except ValueError as e:
        issues.error((*path, "averageValue"), str(e))
        return None
    if average <= 0:
        issues.error((*path, "averageValue"), "must be greater than zero")
        return None
    return average


def _rules(rules: kube.HPAScalingRules | None, default: ScalingRules) -> ScalingRules:
    """``rules`` with each unset field taken from Kubernetes' default for its direction."""
    if rules is None:
        return default
    policies = default.policies
    if rules.policies is not None:
        policies = tuple(ScalingPolicy(type=p.type, value=p.value, period_s=p.period_seconds) for p in rules.policies)
    return ScalingRules(
        window_s=default.window_s if rules.stabilization_window_seconds is None else rules.stabilization_window_seconds,
        select=rules.select_policy or default.select,
        policies=policies,
    )


def resolve_autoscalers(
    autoscalers: Sequence[Autoscaler], workloads: Sequence[Workload], errors: list[ManifestError], invalid: list[str]
) -> tuple[list[Autoscaler], list[str]]:
    """The autoscalers whose targets are in the revision, and warnings; each other one is an error and invalid.

    A target whose own document is invalid keeps its last valid spec, so its autoscaler stays.
    """
    by_key = {w.key: w for w in workloads}
    targets = Counter(a.target for a in autoscalers)
    kept: list[Autoscaler] = []
    warnings: list[str] = []
    for a in autoscalers:
        where = f"{a.file}:{a.line}" if a.line else a.file
        target = by_key.get(a.target)
        field = "spec.scaleTargetRef"
        if targets[a.target] > 1:
            problem = f"{a.target_kind} {a.target_name} is scaled by more than one HorizontalPodAutoscaler"
            hint = "keep one autoscaler per workload (Kubernetes disables them all)"
        elif target is None and str(a.target) not in invalid:
            problem = f"{a.target_kind} {a.target_name} is not in namespace {a.namespace} of this revision"
            hint = "name a Deployment or StatefulSet of the same namespace in scaleTargetRef"
        elif (
            target is not None
            and target.pod.gpu_count() == 0
            and any(m.resource == "gpu_utilization" for m in a.metrics)
        ):
            field = "spec.metrics"
            problem = f"gpu_utilization is measured on the GPUs of the replicas; {target.kind} {target.name} has none"
            hint = f"set resources.limits nvidia.com/gpu in {target.kind} {target.name}, or use another metric"
        elif target is not None and (missing := _unrequested(a, target)):
            field = "spec.metrics"
            problem = f"a {missing} Utilization target needs a {missing} request in every container of the target"
            hint = f"set resources.requests.{missing} in {target.kind} {target.name}, or use an AverageValue target"
        else:
            if target is not None and target.replicas_set:
                warnings.append(
                    f"{where}: spec.scaleTargetRef: {target.kind} {target.name} also sets spec.replicas "
                    f"({target.file}:{target.line}); it is the starting point only, the autoscaler decides the count"
                )
            kept.append(a)
            continue
        errors.append(ManifestError(file=a.file, line=a.line, field=field, message=problem, hint=hint))
        invalid.append(a.key)
    return kept, warnings


def _unrequested(a: Autoscaler, target: Workload) -> str | None:
    """The resource of a Utilization metric some long-running container of ``target`` requests none of."""
    for m in a.metrics:
        if m.utilization is None:
            continue
        for c in target.pod.long_running():
            if (c.cpu_request_millis if m.resource == "cpu" else c.memory_request_bytes) == 0:
                return m.resource
    return None
