"""HorizontalPodAutoscaler documents (autoscaling/v2 and v1): what is read, defaulted, refused and warned about."""

from __future__ import annotations

from gitops.manifests.load import combine, parse_file
from gitops.model import SCALE_DOWN_DEFAULT, SCALE_UP_DEFAULT, Autoscaler, ManifestSet, MetricTarget, ScalingPolicy
from tests.builders import autoscaler, deployment

# A Deployment whose container requests cpu and memory, so Utilization targets apply.
WEB = deployment("web", container="resources: {requests: {cpu: 100m, memory: 64Mi}}")


def load(files: dict[str, str]) -> ManifestSet:
    return combine({name: parse_file(name, text.encode()) for name, text in files.items()})


def only(mset: ManifestSet) -> Autoscaler:
    assert mset.errors == (), [str(e) for e in mset.errors]
    (hpa,) = mset.autoscalers
    return hpa


def errors(files: dict[str, str]) -> list[str]:
    return [str(e) for e in load(files).errors]


def test_a_v2_autoscaler_is_read_with_kubernetes_defaults() -> None:
    hpa = only(load({"web.yaml": WEB, "hpa.yaml": autoscaler()}))
    assert (hpa.key, str(hpa.target), hpa.min_replicas, hpa.max_replicas) == (
        "default/HorizontalPodAutoscaler/web",
        "default/Deployment/web",
        1,
        5,
    )
    # No metrics: 80 % of the cpu request, as Kubernetes defaults them.
    assert hpa.metrics == (MetricTarget(resource="cpu", utilization=80),)
    assert (hpa.scale_up, hpa.scale_down) == (SCALE_UP_DEFAULT, SCALE_DOWN_DEFAULT)
    assert SCALE_UP_DEFAULT.window_s == 0 and SCALE_UP_DEFAULT.select == "Max"
    assert {(p.type, p.value, p.period_s) for p in SCALE_UP_DEFAULT.policies} == {("Pods", 4, 15), ("Percent", 100, 15)}
    assert SCALE_DOWN_DEFAULT.window_s == 300


def test_metrics_and_behavior_are_read_and_unset_rules_take_the_directions_defaults() -> None:
    spec = """
    metrics:
    - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}
    - {type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}}
    - {type: Resource, resource: {name: cpu, target: {type: AverageValue, averageValue: 250m}}}
    - {type: Resource, resource: {name: cpu, target: {type: AverageValue, averageValue: 0.5}}}
    behavior:
      scaleDown: {stabilizationWindowSeconds: 5, policies: [{type: Pods, value: 1, periodSeconds: 10}]}
      scaleUp: {selectPolicy: Min}
    """
    hpa = only(load({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=spec)}))
    assert hpa.metrics == (
        MetricTarget(resource="cpu", utilization=50),
        MetricTarget(resource="memory", average=100 * 2**20),
        MetricTarget(resource="cpu", average=250),
        MetricTarget(resource="cpu", average=500),
    )
    assert hpa.scale_down.window_s == 5 and hpa.scale_down.select == "Max"
    assert hpa.scale_down.policies == (ScalingPolicy(type="Pods", value=1, period_s=10),)
    assert hpa.scale_up.select == "Min" and hpa.scale_up.policies == SCALE_UP_DEFAULT.policies


def test_a_v1_autoscaler_reads_its_cpu_target() -> None:
    v1 = autoscaler().replace("autoscaling/v2", "autoscaling/v1") + "  targetCPUUtilizationPercentage: 60\n"
    assert only(load({"web.yaml": WEB, "hpa.yaml": v1})).metrics == (MetricTarget(resource="cpu", utilization=60),)


def test_unmeasured_metrics_are_refused_with_file_line_and_what_to_do() -> None:
    spec = """
    metrics:
    - {type: Pods, pods: {metric: {name: queue_length}, target: {type: AverageValue, averageValue: 10}}}
    - {type: External, external: {metric: {name: queue}, target: {type: Value, value: 3}}}
    - {type: Resource, resource: {name: ephemeral-storage, target: {type: Utilization, averageUtilization: 50}}}
    - {type: Resource, resource: {name: cpu, target: {type: Value, value: 1}}}
    """
    found = errors({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=spec)})
    assert found[0] == (
        "hpa.yaml:10: spec.metrics[0].pods.metric.name: unknown Pods metric; "
        "supported: gpu_utilization, requests_per_second"
    )
    assert found[1].startswith("hpa.yaml:11: spec.metrics[1].external: External metrics need a metrics API")
    assert found[2].startswith("hpa.yaml:12: spec.metrics[2].resource.name: only cpu and memory")
    assert "use Utilization or AverageValue" in found[3] and found[3].startswith("hpa.yaml:13:")
    assert load({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=spec)}).invalid_keys == (
        "default/HorizontalPodAutoscaler/web",
    )


def test_pods_metrics_read_an_average_value_in_thousandths() -> None:
    gpu_web = deployment("web", container="resources: {limits: {nvidia.com/gpu: 1}}")
    spec = """
    metrics:
    - {type: Pods, pods: {metric: {name: gpu_utilization}, target: {type: AverageValue, averageValue: 60}}}
    - {type: Pods, pods: {metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: 500m}}}
    """
    hpa = only(load({"web.yaml": gpu_web, "hpa.yaml": autoscaler(spec=spec)}))
    assert hpa.metrics == (
        MetricTarget(resource="gpu_utilization", average=60_000),
        MetricTarget(resource="requests_per_second", average=500),
    )


def test_pods_metrics_refuse_other_targets_and_gpu_utilization_needs_gpus() -> None:
    gpu = "{metric: {name: gpu_utilization}, target: {type: AverageValue, averageValue: %s}}"
    spec = """
    metrics:
    - {type: Pods, pods: {metric: {name: gpu_utilization}, target: {type: Utilization, averageUtilization: 6}}}
    - {type: Pods, pods: {metric: {name: gpu_utilization, selector: {}}, target: {type: AverageValue}}}
    - {type: Pods}
    """
    found = errors({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=spec)})
    assert found[0].startswith("hpa.yaml:10: spec.metrics[0].pods: a Pods metric needs an AverageValue target")
    assert found[1].startswith("hpa.yaml:11: spec.metrics[1].pods.target: target type AverageValue needs averageValue")
    assert found[2].startswith("hpa.yaml:12: spec.metrics[2]: a Pods metric needs pods:")
    (error,) = errors({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=f"metrics: [{{type: Pods, pods: {gpu % 0}}}]")})
    assert error == "hpa.yaml:9: spec.metrics[0].pods.target.averageValue: must be greater than zero"
    selector = gpu.replace("}, target", ", selector: {matchLabels: {a: b}}}, target") % 60
    (error,) = errors({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=f"metrics: [{{type: Pods, pods: {selector}}}]")})
    assert "spec.metrics[0].pods.metric.selector: metric selectors are not supported" in error
    (error,) = errors({"web.yaml": WEB, "hpa.yaml": autoscaler(spec=f"metrics: [{{type: Pods, pods: {gpu % 60}}}]")})
    assert "spec.metrics: gpu_utilization is measured on the GPUs of the replicas; Deployment web has none" in error


def test_a_missing_target_is_an_error_naming_it() -> None:
    (error,) = errors({"web.yaml": WEB, "hpa.yaml": autoscaler(target="api")})
    assert error.startswith("hpa.yaml:1: spec.scaleTargetRef: Deployment api is not in namespace default")


def test_a_daemonset_target_and_min_above_max_are_refused() -> None:
    daemon = autoscaler().replace("kind: Deployment", "kind: DaemonSet")
    assert "only a Deployment or StatefulSet" in errors({"hpa.yaml": daemon})[0]
    assert "minReplicas (6) is above maxReplicas (5)" in errors({"hpa.yaml": autoscaler(min_replicas=6)})[0]


def test_a_utilization_target_needs_requests_on_the_target() -> None:
    (error,) = errors({"web.yaml": deployment("web"), "hpa.yaml": autoscaler()})
    assert "spec.metrics: a cpu Utilization target needs a cpu request" in error


def test_replicas_in_git_is_a_starting_point_with_a_warning() -> None:
    web = WEB.replace("spec:\n", "spec:\n  replicas: 2\n", 1)
    mset = load({"web.yaml": web, "hpa.yaml": autoscaler()})
    only(mset)
    (warning,) = mset.warnings
    assert warning.startswith("hpa.yaml:1: spec.scaleTargetRef: Deployment web also sets spec.replicas (web.yaml:1)")
    assert load({"web.yaml": WEB, "hpa.yaml": autoscaler()}).warnings == ()


def test_two_autoscalers_of_one_workload_are_both_errors() -> None:
    found = errors({"web.yaml": WEB, "a.yaml": autoscaler("a"), "b.yaml": autoscaler("b")})
    assert len(found) == 2 and all("scaled by more than one HorizontalPodAutoscaler" in e for e in found)


def test_a_statefulset_can_be_scaled() -> None:
    stateful = WEB.replace("kind: Deployment", "kind: StatefulSet").replace(
        "  selector:", "  serviceName: web\n  selector:"
    )
    hpa = only(load({"web.yaml": stateful, "hpa.yaml": autoscaler().replace("kind: Deployment", "kind: StatefulSet")}))
    assert str(hpa.target) == "default/StatefulSet/web"
