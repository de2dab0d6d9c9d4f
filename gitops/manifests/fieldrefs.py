"""env[].valueFrom fieldRef and resourceFieldRef: resolved now where the repository holds the value.

Replica- and node-dependent fields become a ``model.FieldRef`` that the node resolves when it
creates the container (gitops/downward.py), so the spec stays the same on every node.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from gitops import model
from gitops.downward import NODE_FIELDS, cpu_cores, resource_value
from gitops.manifests import kube
from gitops.manifests.issues import Issues
from gitops.manifests.yamlsafe import Path

if TYPE_CHECKING:
    from gitops.manifests.pod import PodContext


def resolve(
    source: kube.EnvVarSource, container: kube.Container, pod: kube.PodSpec, ctx: PodContext, issues: Issues, path: Path
) -> str | model.FieldRef:
    """The variable's value, or the reference the node resolves."""
    if source.field_ref is not None:
        return _field(source.field_ref, pod, ctx)
    ref = source.resource_field_ref
    assert ref is not None  # the caller passes a fieldRef or a resourceFieldRef
    target = container
    if ref.container_name:
        found = [c for c in (*pod.init_containers, *pod.containers) if c.name == ref.container_name]
        if not found:
            issues.error((*path, "resourceFieldRef", "containerName"), f"no container named '{ref.container_name}'")
            return ""
        target = found[0]
    return _resource(ref.resource, target.resources, str(ref.divisor))


def _field(ref: kube.ObjectFieldSelector, pod: kube.PodSpec, ctx: PodContext) -> str | model.FieldRef:
    path = ref.field_path
    if path in NODE_FIELDS:
        return model.FieldRef(path=path)
    if path == "metadata.namespace":
        return ctx.namespace
    if path == "spec.serviceAccountName":
        account = pod.service_account_name or pod.service_account
        return account if isinstance(account, str) and account else "default"
    keyed = ref.keyed()
    assert keyed is not None  # the model admits no other path
    kind, key = keyed
    return (ctx.labels if kind == "labels" else ctx.annotations).get(key, "")


def _resource(resource: str, requirements: kube.ResourceRequirements | None, divisor: str) -> str | model.FieldRef:
    limits = requirements.limits if requirements and requirements.limits else kube.ResourceList()
    requests = requirements.requests if requirements and requirements.requests else kube.ResourceList()
    cpu_limit, memory_limit = limits.cpu, limits.memory
    # As the kubelet does: a request left out is the limit; a limit left out is the node's capacity.
    values = {
        "limits.cpu": cpu_limit,
        "limits.memory": memory_limit,
        "requests.cpu": cpu_limit if requests.cpu is None else requests.cpu,
        "requests.memory": memory_limit if requests.memory is None else requests.memory,
    }
    value = values[resource]
    if value is None and resource.startswith("limits."):
        return model.FieldRef(path=resource, divisor=divisor)
    amount = cpu_cores(value or 0) if resource.endswith(".cpu") else Decimal(value or 0)
    return resource_value(amount, divisor)
