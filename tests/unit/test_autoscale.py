"""The autoscaling decision against the examples of Kubernetes' HorizontalPodAutoscaler documentation.

https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/ (algorithm details, scaling
policies, stabilization window, selectPolicy) and pkg/controller/podautoscaler (horizontal.go,
replica_calculator.go).
"""

from __future__ import annotations

from itertools import pairwise

from gitops.autoscale import History, Usage, decide, reading, seeded
from gitops.model import Autoscaler, MetricTarget, ScalingPolicy, ScalingRules

CPU_50 = MetricTarget(resource="cpu", utilization=50)
REQUESTS = (100, 64 * 2**20)
FAST = ScalingRules(window_s=0, policies=(ScalingPolicy(type="Percent", value=1000, period_s=1),))


def hpa(
    *metrics: MetricTarget,
    low: int = 1,
    high: int = 100,
    up: ScalingRules | None = None,
    down: ScalingRules | None = None,
) -> Autoscaler:
    extra = {k: v for k, v in (("scale_up", up), ("scale_down", down)) if v is not None}
    return Autoscaler(
        name="web",
        file="hpa.yaml",
        target_kind="Deployment",
        target_name="web",
        min_replicas=low,
        max_replicas=high,
        metrics=metrics or (CPU_50,),
        **extra,
    )


def cpu(pods: int, millis_each: int) -> Usage:
    return Usage(pods=pods, cpu_millis=pods * millis_each)


def test_the_formula_doubles_at_twice_the_target_and_halves_at_half() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of replicas will be doubled"
    average = MetricTarget(resource="cpu", average=100)
    assert reading(average, 3, cpu(3, 200), REQUESTS).proposal == 6
    assert reading(average, 4, cpu(4, 50), REQUESTS).proposal == 2
    # desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)], with utilization in %.
    r = reading(CPU_50, 3, cpu(3, 70), REQUESTS)
    assert (r.current, r.target, r.proposal) == (70, 50, 5)


def test_no_change_within_the_tolerance() -> None:
    # "skips any scaling action if the ratio is sufficiently close to 1.0 (within a configurable tolerance, 0.1)"
    assert reading(CPU_50, 4, cpu(4, 54), REQUESTS).proposal == 4
    assert reading(CPU_50, 4, cpu(4, 46), REQUESTS).proposal == 4
    assert reading(CPU_50, 4, cpu(4, 56), REQUESTS).proposal == 5


def test_missing_replicas_damp_a_scale_up_and_a_scale_down() -> None:
    # Scale-up: replicas without samples count as 0 %: 2 of 3 at 80 % is 53 % over 3, within tolerance.
    assert reading(CPU_50, 3, cpu(2, 80), REQUESTS).proposal == 3
    # 2 of 3 at 150 %: 100 % over 3 asks for 6.
    assert reading(CPU_50, 3, cpu(2, 150), REQUESTS).proposal == 6
    # Scale-down: missing replicas count as 100 % of their request: 1 of 4 at 10 % -> (10+300)/4 = 77 %:
    # the direction flips, so no change.
    assert reading(CPU_50, 4, cpu(1, 10), REQUESTS).proposal == 4
    # Without samples at all there is no proposal, and no scaling.
    assert reading(CPU_50, 4, Usage(), REQUESTS).proposal is None
    verdict, _ = decide(hpa(), 4, Usage(), REQUESTS, History(), 0.0)
    assert (verdict.desired, verdict.reason) == (4, "metrics unavailable")


def test_several_metrics_take_the_largest_proposal_and_a_missing_one_blocks_scale_down() -> None:
    memory = MetricTarget(resource="memory", average=100 * 2**20)
    usage = Usage(pods=2, cpu_millis=2 * 100, memory_bytes=2 * 300 * 2**20)
    verdict, _ = decide(hpa(CPU_50, memory, up=FAST), 2, usage, REQUESTS, History(), 0.0)
    # cpu asks for 4, memory for 6.
    assert verdict.desired == 6 and verdict.reason.startswith("memory above target")
    # Memory utilization needs a request: with none it is missing, and cpu alone may not scale down.
    quiet = Usage(pods=4, cpu_millis=4 * 10, memory_bytes=4 * 2**20)
    mem_util = MetricTarget(resource="memory", utilization=50)
    verdict, _ = decide(hpa(CPU_50, mem_util, down=FAST), 4, quiet, (100, 0), History(), 0.0)
    assert verdict.desired == 4


def test_default_scale_up_allows_the_larger_of_4_pods_and_100_percent_per_15_seconds() -> None:
    busy = cpu(1, 1000)  # asks for 20
    verdict, history = decide(hpa(), 1, busy, REQUESTS, History(), 0.0)
    assert (verdict.desired, verdict.reason) == (5, "cpu above target; ScaleUpLimit")
    # Within the same 15 s the period started at 1: no further scale-up.
    verdict, history = decide(hpa(), 5, cpu(5, 1000), REQUESTS, history, 10.0)
    assert verdict.desired == 5
    # After the period: max(10 + 4, 10 * 2) from 10 replicas.
    verdict, _ = decide(hpa(), 10, cpu(10, 1000), REQUESTS, history, 16.0)
    assert verdict.desired == 20


def test_scale_down_policies_follow_the_documented_80_replica_example() -> None:
    # Pods 4 / 60 s and Percent 10 / 60 s, selectPolicy Max: 80 -> 72 -> 64 (7.2 removes 8) ... below 40, 4 at a time.
    rules = ScalingRules(
        window_s=0,
        policies=(
            ScalingPolicy(type="Pods", value=4, period_s=60),
            ScalingPolicy(type="Percent", value=10, period_s=60),
        ),
    )
    scaler = hpa(low=10, high=100, down=rules)
    counts, history, now, current = [], History(), 0.0, 80
    while current > 10 and len(counts) < 30:
        verdict, history = decide(scaler, current, cpu(current, 1), REQUESTS, history, now)
        current = verdict.desired
        counts.append(current)
        now += 61
    assert counts[:3] == [72, 64, 57]
    assert [b - a for a, b in pairwise(counts) if a <= 40][:2] == [-4, -4]
    assert counts[-1] == 10
    # selectPolicy Min takes the smaller change: 4 pods from 80.
    least = hpa(low=10, down=ScalingRules(window_s=0, select="Min", policies=rules.policies))
    assert decide(least, 80, cpu(80, 1), REQUESTS, History(), 0.0)[0].desired == 76
    # Disabled: no scale-down at all.
    off = hpa(low=10, down=ScalingRules(window_s=0, select="Disabled", policies=rules.policies))
    assert decide(off, 80, cpu(80, 1), REQUESTS, History(), 0.0)[0].desired == 80


def test_the_scale_down_window_takes_the_highest_recommendation_in_it() -> None:
    scaler = hpa(down=ScalingRules(window_s=300, policies=(ScalingPolicy(type="Percent", value=100, period_s=15),)))
    history = History()
    verdict, history = decide(scaler, 4, cpu(4, 50), REQUESTS, history, 0.0)  # recommends 4
    assert verdict.desired == 4
    verdict, history = decide(scaler, 4, cpu(4, 10), REQUESTS, history, 100.0)  # recommends 1: 4 is in the window
    assert verdict.desired == 4
    verdict, history = decide(scaler, 4, cpu(4, 20), REQUESTS, history, 200.0)  # 2
    assert verdict.desired == 4
    verdict, history = decide(scaler, 4, cpu(4, 10), REQUESTS, history, 301.0)  # the 4 left the window; max(1, 2)
    assert (verdict.desired, verdict.reason) == (2, "All metrics below target")


def test_a_scale_up_window_takes_the_lowest_recommendation_in_it() -> None:
    scaler = hpa(up=ScalingRules(window_s=60, policies=FAST.policies))
    _, history = decide(scaler, 2, cpu(2, 50), REQUESTS, History(), 0.0)  # 2
    verdict, history = decide(scaler, 2, cpu(2, 200), REQUESTS, history, 30.0)  # 8, but 2 is in the window
    assert verdict.desired == 2
    verdict, _ = decide(scaler, 2, cpu(2, 200), REQUESTS, history, 61.0)
    assert verdict.desired == 8


def test_a_new_decider_waits_a_scale_down_window_from_the_count_in_force() -> None:
    verdict, _ = decide(hpa(), 5, cpu(5, 1), REQUESTS, seeded(5, 1000.0), 1100.0)
    assert verdict.desired == 5
    verdict, _ = decide(hpa(), 5, cpu(5, 1), REQUESTS, seeded(5, 1000.0), 1301.0)
    assert verdict.desired == 1


def test_min_and_max_clamp() -> None:
    assert decide(hpa(high=3, up=FAST), 2, cpu(2, 500), REQUESTS, History(), 0.0)[0].desired == 3
    assert decide(hpa(low=2, down=FAST), 4, cpu(4, 1), REQUESTS, History(), 0.0)[0].desired == 2
    verdict, _ = decide(hpa(high=3), 5, cpu(5, 50), REQUESTS, History(), 0.0)
    assert (verdict.desired, verdict.reason) == (3, "Current number of replicas above maxReplicas")
    assert decide(hpa(low=2), 1, cpu(1, 50), REQUESTS, History(), 0.0)[0].desired == 2


def test_pods_metrics_average_over_the_replicas_that_report_them() -> None:
    gpu = MetricTarget(resource="gpu_utilization", average=60_000)
    # Two replicas at 90 % of their GPUs against 60 %: 3 replicas; cpu samples play no part.
    r = reading(gpu, 2, Usage(gpu_pods=2, gpu_milli=180_000), REQUESTS)
    assert (r.current, r.target, r.proposal) == (90_000, 60_000, 3)
    # One replica of two without GPU samples counts as idle on a scale-up: 90 % over 2 is 45 %, a scale-down
    # proposal the missing one flips, so no change.
    assert reading(gpu, 2, Usage(gpu_pods=1, gpu_milli=90_000), REQUESTS).proposal == 2
    rps = MetricTarget(resource="requests_per_second", average=10_000)
    # 4 serving replicas receive 100 connections/s in all against 10 each: 10 replicas.
    assert reading(rps, 4, Usage(serving=4, connections_milli=100_000), REQUESTS).proposal == 10
    assert reading(rps, 4, Usage(pods=4, cpu_millis=400), REQUESTS).proposal is None
    verdict, _ = decide(hpa(gpu, rps, down=FAST), 4, Usage(gpu_pods=4, gpu_milli=4 * 15_000), REQUESTS, History(), 0.0)
    # gpu asks for 1, but requests_per_second is missing: no scale-down.
    assert (verdict.desired, verdict.reason) == (4, "metrics unavailable")
