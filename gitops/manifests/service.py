"""Turning a validated ``v1 Service`` into a resolved ``model.Service``: the checks across its fields."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from gitops.manifests import kube
from gitops.manifests.issues import Issues
from gitops.model import Service, ServicePort

# Service names become DNS labels and environment variable prefixes, so they must start with a letter.
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?\Z")
_SELECTORLESS = (
    "a Service without a selector needs Endpoints written by hand or by a controller, and there is no "
    "API server here to hold them"
)


def convert_service(doc: kube.Service, file: str, line: int | None, issues: Issues) -> Service | None:
    """The resolved Service, or None after recording every reason it is invalid."""
    before = len(issues.errors)
    spec = doc.spec
    if not _DNS_1035.match(doc.metadata.name):
        issues.error(
            ("metadata", "name"),
            f"Service name '{doc.metadata.name}' must start with a letter (RFC 1035 label): it becomes a DNS name "
            "and an environment variable prefix",
        )
    node_ports = spec.type in ("NodePort", "LoadBalancer")
    if spec.type == "LoadBalancer":
        issues.warn(("spec", "type"), "LoadBalancer is served as a NodePort on every node's address")
    if spec.type == "ExternalName":
        _check_external_name(spec, issues)
    else:
        _check_proxied(spec, issues)
    ports = _ports(spec, node_ports, issues)
    if len(issues.errors) > before:
        return None
    return Service(
        namespace=doc.metadata.namespace,
        name=doc.metadata.name,
        file=file,
        line=line,
        type="NodePort" if node_ports else spec.type,
        cluster_ip=spec.cluster_ip or "",
        selector=spec.selector or {},
        ports=ports,
        external_name=spec.external_name,
        session_affinity=spec.session_affinity,
        publish_not_ready=spec.publish_not_ready_addresses,
    )


def _check_external_name(spec: kube.ServiceSpec, issues: Issues) -> None:
    if not spec.external_name:
        issues.error(("spec", "externalName"), "type ExternalName needs externalName, the DNS name it aliases")
    elif not _DNS_NAME.match(spec.external_name):
        issues.error(
            ("spec", "externalName"),
            f"'{spec.external_name[:80]}' is not a DNS name (lowercase labels separated by '.')",
        )
    if spec.cluster_ip:
        issues.error(("spec", "clusterIP"), "an ExternalName Service has no clusterIP; remove it")
    if spec.selector:
        issues.warn(("spec", "selector"), "ignored: an ExternalName Service aliases a DNS name, not pods")


def _check_proxied(spec: kube.ServiceSpec, issues: Issues) -> None:
    if spec.external_name:
        issues.error(("spec", "externalName"), "externalName needs type: ExternalName", "remove it or set the type")
    if not spec.selector:
        issues.error(
            ("spec", "selector"),
            _SELECTORLESS,
            "add a selector matching the pods' labels, or use type: ExternalName for a name outside the cluster",
        )
    if spec.cluster_ip == "None":
        if spec.type != "ClusterIP":
            issues.error(("spec", "clusterIP"), f"a headless Service (clusterIP: None) cannot be {spec.type}")
        return
    if not spec.ports:
        issues.error(("spec", "ports"), "a Service needs at least one port (only a headless one may have none)")
    if spec.cluster_ip:
        try:
            ipaddress.IPv4Address(spec.cluster_ip)
        except ValueError:
            issues.error(
                ("spec", "clusterIP"),
                f"clusterIP '{spec.cluster_ip[:80]}' must be None (headless) or an IPv4 address in the serviceCidr",
                "remove it to have one allocated",
            )


def _ports(spec: kube.ServiceSpec, node_ports: bool, issues: Issues) -> tuple[ServicePort, ...]:
    if len(spec.ports) > 1:
        for index, port in enumerate(spec.ports):
            if port.name is None:
                issues.error(
                    ("spec", "ports", index, "name"), "every port of a Service with several ports needs a name"
                )
    _no_repeats(issues, "name", [(p.name, i) for i, p in enumerate(spec.ports) if p.name is not None])
    _no_repeats(issues, "port", [((p.port, p.protocol), i) for i, p in enumerate(spec.ports)])
    _no_repeats(issues, "nodePort", [(p.node_port, i) for i, p in enumerate(spec.ports) if p.node_port is not None])
    out = []
    for index, port in enumerate(spec.ports):
        if port.node_port is not None and not node_ports:
            issues.error(
                ("spec", "ports", index, "nodePort"),
                f"nodePort needs type NodePort or LoadBalancer (this Service is {spec.type})",
            )
        out.append(
            ServicePort(
                name=port.name,
                protocol="UDP" if port.protocol == "UDP" else "TCP",  # SCTP is refused by the model
                port=port.port,
                target_port=port.port if port.target_port is None else port.target_port,
                node_port=port.node_port,
            )
        )
    return tuple(out)


def _no_repeats(issues: Issues, field: str, values: list[tuple[object, int]]) -> None:
    counts = Counter(value for value, _ in values)
    for value, index in values:
        if counts[value] > 1:
            shown = "/".join(str(v) for v in value) if isinstance(value, tuple) else value
            issues.error(("spec", "ports", index, field), f"{field} {shown} is used by more than one port")
