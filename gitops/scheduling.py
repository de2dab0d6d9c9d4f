"""Scheduling rules of a workload and taints of a node, and how they match (docs/placement.md). Pure.

Resolved from ``affinity``, ``tolerations`` and ``topologySpreadConstraints`` (manifests/scheduling.py)
and from node config ``taints``; ``gitops.placement`` applies them. Everything here is integer and
string logic, so every node decides identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HOSTNAME_LABEL = "kubernetes.io/hostname"
# Every node checks every workload's tolerations against every node's taints: a few are normal.
MAX_TAINTS = 64

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Taint(_Frozen):
    """A node taint; ``time_added`` (NoExecute) starts the clock of ``tolerationSeconds``."""

    key: str = Field(min_length=1, max_length=316)
    value: str = Field(default="", max_length=63)
    effect: TaintEffect
    time_added: datetime | None = None

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


class Toleration(_Frozen):
    """A pod toleration; an empty key with Exists tolerates every taint, an empty effect every effect."""

    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: TaintEffect | None = None
    seconds: int | None = None

    def matches(self, taint: Taint) -> bool:
        """True if this toleration covers ``taint`` (Kubernetes' ToleratesTaint)."""
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


class Requirement(_Frozen):
    """One matchExpressions (a node label) or matchFields (``metadata.name``) requirement."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    on_name: bool = False

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        """True if the node called ``name`` with ``labels`` meets this requirement."""
        value = name if self.on_name else labels.get(self.key)
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        # Gt/Lt compare integers; a missing or non-integer label does not match (as Kubernetes).
        try:
            number = int(value) if value is not None else None
        except ValueError:
            number = None
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "Gt" else number < bound


class NodeTerm(_Frozen):
    """A nodeSelectorTerm: all of its requirements (an empty term matches no node, as Kubernetes)."""

    requirements: tuple[Requirement, ...]

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        """True if every requirement holds."""
        return bool(self.requirements) and all(r.matches(name, labels) for r in self.requirements)


class Preference(_Frozen):
    """A preferred node term and its weight (1-100)."""

    weight: int
    term: NodeTerm


class DomainRule(_Frozen):
    """A rule over this workload's replica count per value of a node label (a topology domain).

    ``anti`` (podAntiAffinity): a domain holding a replica takes no other (required), or scores
    ``weight`` lower per replica there (preferred). Otherwise topologySpreadConstraints: placing
    in a domain may not leave it more than ``max_skew`` above the least-filled eligible domain
    (required: DoNotSchedule), or scores ``weight`` lower per replica beyond that (ScheduleAnyway).
    """

    topology_key: str
    anti: bool = False
    required: bool = True
    weight: int = 0
    max_skew: int = 1
    min_domains: int = 1


class Scheduling(_Frozen):
    """The placement rules of one workload beyond nodeSelector; the default changes nothing."""

    required: tuple[NodeTerm, ...] = ()  # ORed; empty: every node
    preferred: tuple[Preference, ...] = ()
    domains: tuple[DomainRule, ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    def node_affinity(self, name: str, labels: Mapping[str, str]) -> bool:
        """True if the node meets the required node affinity."""
        return not self.required or any(t.matches(name, labels) for t in self.required)

    def preference(self, name: str, labels: Mapping[str, str], taints: tuple[Taint, ...]) -> int:
        """Static score of a node: preferred terms' weights, less untolerated PreferNoSchedule taints."""
        score = sum(p.weight for p in self.preferred if p.term.matches(name, labels))
        return score - sum(100 for t in taints if t.effect == "PreferNoSchedule" and not self.tolerates(t))

    def tolerates(self, taint: Taint) -> bool:
        """True if some toleration covers ``taint`` (for NoExecute: for some time at least)."""
        return any(t.matches(taint) for t in self.tolerations)

    def blocking_taint(self, taints: tuple[Taint, ...], running: bool, now: datetime | None) -> Taint | None:
        """The first taint that keeps this workload off a node, or None.

        New replicas avoid NoSchedule and NoExecute taints not tolerated without a time limit
        (a limited toleration would place a replica only to evict it). A running replica is
        affected by NoExecute only, and stays until its tolerationSeconds since the taint's
        ``time_added`` have passed (by ``now``; unknown times never expire).
        """
        for taint in taints:
            if taint.effect == "PreferNoSchedule" or (running and taint.effect == "NoSchedule"):
                continue
            matching = [t for t in self.tolerations if t.matches(taint)]
            if any(t.seconds is None for t in matching):
                continue
            if running and matching and not _expired(taint, max(t.seconds or 0 for t in matching), now):
                continue
            return taint
        return None


def _expired(taint: Taint, seconds: int, now: datetime | None) -> bool:
    if now is None or taint.time_added is None:
        return False
    return (now - taint.time_added).total_seconds() >= seconds


def stamp_taints(taints: Sequence[Taint], earlier: Sequence[Taint], now: datetime) -> tuple[Taint, ...]:
    """``taints`` with ``time_added`` set on NoExecute ones: as ``earlier`` had it for the same taint, else ``now``."""
    known = {(t.key, t.value, t.effect): t.time_added for t in earlier if t.time_added is not None}
    return tuple(
        t.model_copy(update={"time_added": known.get((t.key, t.value, t.effect), now)})
        if t.effect == "NoExecute" and t.time_added is None
        else t
        for t in taints
    )


def domain_of(name: str, labels: Mapping[str, str], key: str) -> str | None:
    """A node's value for topology ``key``; every node is its own ``kubernetes.io/hostname`` domain."""
    return labels.get(key, name if key == HOSTNAME_LABEL else None)
