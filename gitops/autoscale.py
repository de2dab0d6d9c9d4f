"""The HorizontalPodAutoscaler decision, as Kubernetes' controller makes it (pkg/controller/podautoscaler). Pure.

Inputs are the cluster-wide usage of the target's sampled replicas, the count now in force, and the
decider's memory of its recent recommendations and scaling events; the clock is passed in (seconds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field, replace

from gitops.model import Autoscaler, MetricTarget, ScalingRules

# Kubernetes' --horizontal-pod-autoscaler-tolerance default: no change within 10 % of the target.
TOLERANCE = 0.1


@dataclass(frozen=True)
class Usage:
    """What the target's sampled replicas use together, per metric: how many replicas have samples, and the sum.

    ``pods`` replicas with cpu and memory samples use ``cpu_millis`` and ``memory_bytes``; ``gpu_pods`` with
    GPU samples use ``gpu_milli`` (thousandths of a percent); ``serving`` replicas behind a Service receive
    ``connections_milli`` new connections per second (thousandths).
    """

    pods: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0
    gpu_pods: int = 0
    gpu_milli: int = 0
    serving: int = 0
    connections_milli: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class Reading:
    """One metric now: ``current`` and ``target`` in percent of requests (utilization) or per-replica units."""

    resource: str
    utilization: bool
    current: int
    target: int
    # The replica count this metric alone asks for; None when it could not be computed (no samples).
    proposal: int | None


@dataclass(frozen=True)
class History:
    """The decider's memory of one autoscaler: recommendations and scale events as (time, replicas)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    # (time, replicas added) and (time, replicas removed), for the policies' periods.
    ups: tuple[tuple[float, int], ...] = ()
    downs: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The count to run, why, and the metrics behind it."""

    desired: int
    reason: str
    readings: tuple[Reading, ...] = field(default_factory=tuple)


def seeded(current: int, now: float) -> History:
    """A new decider's memory: the count in force as a recent recommendation, so scale-down waits a window.

    Kubernetes seeds its scale-down window the same way when the controller starts.
    """
    return History(recommendations=((now, current),))


def decide(
    hpa: Autoscaler, current: int, usage: Usage, requests: tuple[int, int], history: History, now: float
) -> tuple[Verdict, History]:
    """The replica count ``hpa`` sets now and the updated history; ``requests`` is one replica's (millicores, bytes)."""
    if current > hpa.max_replicas:
        verdict = Verdict(hpa.max_replicas, "Current number of replicas above maxReplicas")
    elif current < hpa.min_replicas:
        verdict = Verdict(hpa.min_replicas, "Current number of replicas below minReplicas")
    else:
        readings = tuple(reading(m, current, usage, requests) for m in hpa.metrics)
        proposals = [r.proposal for r in readings if r.proposal is not None]
        wanted = max(proposals, default=current)
        # Kubernetes does not scale when no metric can be computed, nor down while any metric is missing.
        if not proposals or (len(proposals) < len(readings) and wanted < current):
            return Verdict(current, "metrics unavailable", readings), history
        above = [r.resource for r in readings if r.proposal == wanted]
        why = f"{above[0]} above target" if wanted > current else "All metrics below target"
        stabilized, history = _stabilize(hpa, current, wanted, history, now)
        desired, limit = _rate_limit(hpa, current, stabilized, history, now)
        verdict = Verdict(desired, f"{why}; {limit}" if limit else why, readings)
    if verdict.desired != current:
        history = _record(hpa, history, verdict.desired - current, now)
    return verdict, history


def reading(metric: MetricTarget, current: int, usage: Usage, requests: tuple[int, int]) -> Reading:
    """One metric's current value and proposal (replica_calculator.go, missing replicas handled as it does)."""
    pods, total, request = _sampled(metric, usage, requests)
    utilization = metric.utilization is not None
    target = metric.utilization if metric.utilization is not None else metric.average or 1
    if pods == 0 or (utilization and request == 0):
        return Reading(metric.resource, utilization, 0, target, None)
    value = _value(total, pods, request, utilization)
    ratio = value / target
    missing = max(current - pods, 0)
    if missing == 0:
        proposal = current if abs(1 - ratio) <= TOLERANCE else math.ceil(ratio * pods)
        return Reading(metric.resource, utilization, value, target, proposal)
    # Replicas without samples count as using nothing on a scale-up, and as at (at least) the target on a
    # scale-down, so neither an unready replica nor a late sample exaggerates a change.
    at_target = request * max(100, target) // 100 if utilization else target
    fill = at_target if ratio < 1 else 0
    new_ratio = _value(total + fill * missing, pods + missing, request, utilization) / target
    proposal = math.ceil(new_ratio * (pods + missing))
    if (
        abs(1 - new_ratio) <= TOLERANCE
        or (ratio < 1) != (new_ratio < 1)
        or (new_ratio < 1 and proposal > current)
        or (new_ratio > 1 and proposal < current)
    ):
        proposal = current
    return Reading(metric.resource, utilization, value, target, proposal)


def _sampled(metric: MetricTarget, usage: Usage, requests: tuple[int, int]) -> tuple[int, int, int]:
    """(replicas with samples, their total, one replica's request) of one metric; Pods metrics have no request."""
    if metric.resource == "cpu":
        return usage.pods, usage.cpu_millis, requests[0]
    if metric.resource == "memory":
        return usage.pods, usage.memory_bytes, requests[1]
    if metric.resource == "gpu_utilization":
        return usage.gpu_pods, usage.gpu_milli, 0
    return usage.serving, usage.connections_milli, 0


def _value(total: int, pods: int, request: int, utilization: bool) -> int:
    # Kubernetes truncates both the utilization percentage and the average value to integers.
    return total * 100 // (request * pods) if utilization else total // pods


def _stabilize(hpa: Autoscaler, current: int, wanted: int, history: History, now: float) -> tuple[int, History]:
    """The highest recommendation of the scale-down window and lowest of the scale-up window bound the change."""
    up_cutoff, down_cutoff = now - hpa.scale_up.window_s, now - hpa.scale_down.window_s
    up = min([n for t, n in history.recommendations if t > up_cutoff] + [wanted])
    down = max([n for t, n in history.recommendations if t > down_cutoff] + [wanted])
    stabilized = min(max(current, up), down)
    # Only what either window can still see is kept.
    kept = tuple((t, n) for t, n in history.recommendations if t > min(up_cutoff, down_cutoff))
    return stabilized, replace(history, recommendations=(*kept, (now, wanted)))


def _rate_limit(hpa: Autoscaler, current: int, desired: int, history: History, now: float) -> tuple[int, str]:
    """``desired`` within the policies' limits and min/max, and which limit applied ('' if none)."""
    if desired > current:
        limit = max(_limit(hpa.scale_up, current, history, now, up=True), current)
        if hpa.max_replicas > limit:
            return (limit, "ScaleUpLimit") if desired > limit else (desired, "")
        return (hpa.max_replicas, "TooManyReplicas") if desired > hpa.max_replicas else (desired, "")
    if desired < current:
        limit = min(_limit(hpa.scale_down, current, history, now, up=False), current)
        if hpa.min_replicas < limit:
            return (limit, "ScaleDownLimit") if desired < limit else (desired, "")
        return (hpa.min_replicas, "TooFewReplicas") if desired < hpa.min_replicas else (desired, "")
    return desired, ""


def _limit(rules: ScalingRules, current: int, history: History, now: float, up: bool) -> int:
    """The furthest the policies let the count go from ``current`` (calculateScale{Up,Down}Limit...)."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        since = now - policy.period_s
        added = sum(n for t, n in history.ups if t > since)
        removed = sum(n for t, n in history.downs if t > since)
        start = current - added + removed
        if policy.type == "Pods":
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # Max picks the policy allowing the biggest change, Min the smallest: up that is max/min, down min/max.
    biggest = rules.select == "Max"
    return max(proposals) if biggest == up else min(proposals)


def _record(hpa: Autoscaler, history: History, change: int, now: float) -> History:
    longest = max((p.period_s for r in (hpa.scale_up, hpa.scale_down) for p in r.policies), default=0)

    def recent(events: Sequence[tuple[float, int]]) -> tuple[tuple[float, int], ...]:
        return tuple((t, n) for t, n in events if t > now - longest)

    if change > 0:
        return replace(history, ups=(*recent(history.ups), (now, change)), downs=recent(history.downs))
    return replace(history, ups=recent(history.ups), downs=(*recent(history.downs), (now, -change)))
