"""Turning a pod template's affinity, tolerations and topologySpreadConstraints into ``Scheduling``."""

from __future__ import annotations

from collections.abc import Mapping

from gitops.manifests import kube
from gitops.manifests.issues import Issues
from gitops.manifests.yamlsafe import Path
from gitops.model import WorkloadKind
from gitops.scheduling import DomainRule, NodeTerm, Preference, Requirement, Scheduling, Toleration

# A ScheduleAnyway constraint weighs, per replica past its maxSkew, as much as the heaviest preferred term.
SCHEDULE_ANYWAY_WEIGHT = 100

_NOT_OWN = (
    "only the workload's own replicas are counted, so the selector must select its template's labels; "
    "to keep apart from other workloads, use node labels (nodeSelector, nodeAffinity) or taints"
)


def convert_scheduling(template: kube.PodTemplateSpec, kind: WorkloadKind, issues: Issues, path: Path) -> Scheduling:
    """The placement rules of a pod template at ``path`` (its ``spec``), recording what is not supported."""
    pod = template.spec
    labels = template.metadata.labels
    affinity = pod.affinity or kube.Affinity()
    node = affinity.node_affinity or kube.NodeAffinity()
    required = node.required_during_scheduling_ignored_during_execution
    preferred = node.preferred_during_scheduling_ignored_during_execution
    domains = _anti_affinity(affinity.pod_anti_affinity, labels, issues, (*path, "affinity", "podAntiAffinity"))
    domains += _spread(pod.topology_spread_constraints, labels, issues, (*path, "topologySpreadConstraints"))
    if domains and kind == "DaemonSet":
        issues.warn((*path, "affinity"), "a DaemonSet runs one replica per node: anti-affinity and spread are ignored")
        domains = []
    return Scheduling(
        required=tuple(_term(t) for t in required.node_selector_terms) if required else (),
        preferred=tuple(Preference(weight=p.weight, term=_term(p.preference)) for p in preferred),
        domains=tuple(domains),
        tolerations=tuple(
            Toleration(
                key=t.key or "",
                operator=t.operator,
                value=t.value or "",
                effect=t.effect or None,
                seconds=t.toleration_seconds,
            )
            for t in pod.tolerations
        ),
    )


def _term(term: kube.NodeSelectorTerm) -> NodeTerm:
    def requirement(r: kube.NodeSelectorRequirement, on_name: bool) -> Requirement:
        return Requirement(key=r.key, operator=r.operator, values=tuple(r.values), on_name=on_name)

    return NodeTerm(
        requirements=(
            *(requirement(r, False) for r in term.match_expressions),
            *(requirement(r, True) for r in term.match_fields),
        )
    )


def _anti_affinity(
    anti: kube.PodAntiAffinity | None, labels: Mapping[str, str], issues: Issues, path: Path
) -> list[DomainRule]:
    if anti is None:
        return []
    rules = []
    required = (*path, "requiredDuringSchedulingIgnoredDuringExecution")
    for i, term in enumerate(anti.required_during_scheduling_ignored_during_execution):
        if _selects_own(term.label_selector, labels, issues, (*required, i, "labelSelector")):
            rules.append(DomainRule(topology_key=term.topology_key, anti=True))
    preferred = (*path, "preferredDuringSchedulingIgnoredDuringExecution")
    for i, weighted in enumerate(anti.preferred_during_scheduling_ignored_during_execution):
        term = weighted.pod_affinity_term
        if _selects_own(term.label_selector, labels, issues, (*preferred, i, "podAffinityTerm", "labelSelector")):
            rules.append(DomainRule(topology_key=term.topology_key, anti=True, required=False, weight=weighted.weight))
    return rules


def _spread(
    constraints: list[kube.TopologySpreadConstraint], labels: Mapping[str, str], issues: Issues, path: Path
) -> list[DomainRule]:
    rules = []
    for i, c in enumerate(constraints):
        required = c.when_unsatisfiable == "DoNotSchedule"
        if c.min_domains is not None and not required:
            issues.error((*path, i, "minDomains"), "minDomains needs whenUnsatisfiable: DoNotSchedule")
            continue
        if _selects_own(c.label_selector, labels, issues, (*path, i, "labelSelector")):
            rules.append(
                DomainRule(
                    topology_key=c.topology_key,
                    required=required,
                    weight=0 if required else SCHEDULE_ANYWAY_WEIGHT,
                    max_skew=c.max_skew,
                    min_domains=c.min_domains or 1,
                )
            )
    return rules


def _selects_own(selector: kube.LabelSelector | None, labels: Mapping[str, str], issues: Issues, path: Path) -> bool:
    """True if ``selector`` selects the template's labels; else records why the term is dropped or refused."""
    if selector is None:
        # Kubernetes: a missing selector matches no pod, so the term constrains nothing.
        issues.warn(path, "no labelSelector: it selects no pods, so the term has no effect")
        return False
    if selector.selects(labels):
        return True
    issues.error(path, "does not select this workload's pod template labels", _NOT_OWN)
    return False
