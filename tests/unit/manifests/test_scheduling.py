"""Affinity, tolerations and topologySpreadConstraints in manifests: what they resolve to, what is refused."""

from __future__ import annotations

import pytest

from gitops.manifests.load import parse_file
from gitops.model import Workload
from gitops.scheduling import (
    HOSTNAME_LABEL,
    DomainRule,
    NodeTerm,
    Preference,
    Requirement,
    Scheduling,
    Toleration,
)
from tests.builders import deployment

POD = "spec.template.spec."

HA = """\
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: pool, operator: In, values: [gpu, gpu-big]}
        - {key: cores, operator: Gt, values: ["8"]}
      - matchFields:
        - {key: metadata.name, operator: In, values: [n1]}
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 40
      preference:
        matchExpressions: [{key: disk, operator: Exists}]
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector: {matchLabels: {app: web}}
      topologyKey: kubernetes.io/hostname
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 10
      podAffinityTerm:
        labelSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
        topologyKey: zone
topologySpreadConstraints:
- {maxSkew: 2, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}},
   minDomains: 3, matchLabelKeys: [pod-template-hash]}
- {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {}}
tolerations:
- {key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}
- {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
"""


def workload_of(pod: str, kind: str = "Deployment") -> tuple[Workload, tuple[str, ...]]:
    replicas = None if kind == "DaemonSet" else 3
    result = parse_file("app.yaml", deployment("web", replicas, pod=pod, kind=kind).encode())  # type: ignore[arg-type]
    assert result.errors == (), [str(e) for e in result.errors]
    return result.workloads[0], result.warnings


def test_every_rule_resolves() -> None:
    w, warnings = workload_of(HA)
    assert w.scheduling == Scheduling(
        required=(
            NodeTerm(
                requirements=(
                    Requirement(key="pool", operator="In", values=("gpu", "gpu-big")),
                    Requirement(key="cores", operator="Gt", values=("8",)),
                )
            ),
            NodeTerm(requirements=(Requirement(key="metadata.name", operator="In", values=("n1",), on_name=True),)),
        ),
        preferred=(Preference(weight=40, term=NodeTerm(requirements=(Requirement(key="disk", operator="Exists"),))),),
        domains=(
            DomainRule(topology_key=HOSTNAME_LABEL, anti=True),
            DomainRule(topology_key="zone", anti=True, required=False, weight=10),
            DomainRule(topology_key="zone", max_skew=2, min_domains=3),
            DomainRule(topology_key=HOSTNAME_LABEL, required=False, weight=100, max_skew=1),
        ),
        tolerations=(
            Toleration(key="dedicated", value="gpu", effect="NoSchedule"),
            Toleration(key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute", seconds=300),
        ),
    )
    assert any("matchLabelKeys: ignored" in warning for warning in warnings)


def test_rules_leave_the_spec_hash_alone() -> None:
    plain, _ = workload_of("")
    ruled, _ = workload_of(HA)
    assert plain.spec_hash == ruled.spec_hash


def test_daemon_sets_drop_anti_affinity_and_spread_with_a_warning() -> None:
    w, warnings = workload_of(HA, kind="DaemonSet")
    assert w.scheduling.domains == () and w.scheduling.required
    assert any("a DaemonSet runs one replica per node" in warning for warning in warnings)


def test_a_term_without_label_selector_has_no_effect() -> None:
    w, warnings = workload_of(
        "affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone}]}}"
    )
    assert w.scheduling.domains == ()
    assert any("selects no pods" in warning for warning in warnings)


ANTI = "affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [%s]}}"


@pytest.mark.parametrize(
    ("pod", "field", "says"),
    [
        (
            ANTI % "{labelSelector: {matchLabels: {app: db}}, topologyKey: zone}",
            "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector",
            "does not select this workload's pod template labels",
        ),
        (
            ANTI % "{labelSelector: {matchLabels: {app: web}}, topologyKey: zone, namespaces: [other]}",
            "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaces",
            "only the workload's own namespace",
        ),
        (
            "affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone}]}}",
            "affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution",
            "required podAffinity is not supported",
        ),
        (
            "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: "
            "[{matchExpressions: [{key: cores, operator: Gt, values: [eight]}]}]}}}",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
            ".matchExpressions[0]",
            "operator Gt needs exactly one integer value",
        ),
        (
            "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: "
            "[{matchFields: [{key: metadata.uid, operator: In, values: [x]}]}]}}}",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0]",
            "matchFields supports key metadata.name",
        ),
        (
            "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
            "at least 1 item",
        ),
        (
            "topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, "
            "minDomains: 2, labelSelector: {matchLabels: {app: web}}}]",
            "topologySpreadConstraints[0].minDomains",
            "minDomains needs whenUnsatisfiable: DoNotSchedule",
        ),
        (
            "topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]",
            "topologySpreadConstraints[0].maxSkew",
            "greater than or equal to 1",
        ),
        (
            "tolerations: [{key: k, operator: Exists, value: v}]",
            "tolerations[0]",
            "operator Exists takes no value",
        ),
        (
            "tolerations: [{key: k, effect: NoSchedule, tolerationSeconds: 5}]",
            "tolerations[0]",
            "tolerationSeconds applies to effect NoExecute only",
        ),
    ],
)
def test_refusals_name_the_field(pod: str, field: str, says: str) -> None:
    result = parse_file("app.yaml", deployment("web", 1, pod=pod).encode())
    assert result.workloads == ()
    found = [e for e in result.errors if e.field == POD + field]
    assert found and says in str(found[0]), [str(e) for e in result.errors]
    assert found[0].line is not None
