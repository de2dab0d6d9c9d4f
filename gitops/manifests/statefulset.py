"""A StatefulSet's own fields: claim templates as per-replica claim volumes, ordering, updates, retention."""

from __future__ import annotations

from typing import Any

from gitops import model
from gitops.manifests import kube
from gitops.manifests.issues import Issues


def with_claim_volumes(spec: kube.StatefulSetSpec, issues: Issues) -> kube.PodTemplateSpec:
    """The pod template with a persistentVolumeClaim volume per claim template, so mounts of them resolve."""
    pod = spec.template.spec
    declared = {v.name for v in pod.volumes}
    added = []
    for index, template in enumerate(spec.volume_claim_templates):
        name = template.metadata.name
        if name in declared:
            issues.error(
                ("spec", "volumeClaimTemplates", index, "metadata", "name"),
                f"'{name}' is also a volume of the pod template",
                "rename the claim template or the volume",
            )
        added.append(kube.Volume.model_validate({"name": name, "persistentVolumeClaim": {"claimName": name}}))
    return spec.template.model_copy(update={"spec": pod.model_copy(update={"volumes": [*pod.volumes, *added]})})


def per_replica(pod: model.PodSpec, spec: kube.StatefulSetSpec) -> model.PodSpec:
    """``pod`` with the mounts of claim templates marked per-replica (each replica mounts its own claim)."""
    templates = {t.metadata.name for t in spec.volume_claim_templates}
    raw = {c.name: c for c in (*spec.template.spec.init_containers, *spec.template.spec.containers)}

    def mark(c: model.ContainerSpec) -> model.ContainerSpec:
        targets = {m.mount_path for m in raw[c.name].volume_mounts if m.name in templates}
        mounts = tuple(m.model_copy(update={"per_replica": True}) if m.target in targets else m for m in c.mounts)
        return c.model_copy(update={"mounts": mounts})

    return pod.model_copy(
        update={
            "containers": tuple(mark(c) for c in pod.containers),
            "init_containers": tuple(mark(c) for c in pod.init_containers),
        }
    )


def fields(spec: kube.StatefulSetSpec) -> dict[str, Any]:
    """The Workload fields of a StatefulSet's spec."""
    rolling = spec.update_strategy.rolling_update or kube.RollingUpdateStatefulSetStrategy()
    retention = spec.persistent_volume_claim_retention_policy
    stateful = model.StatefulSpec(
        claims=tuple(
            model.ClaimTemplate(
                name=t.metadata.name,
                storage_bytes=t.spec.resources.requests.storage,
                storage_class=t.spec.storage_class_name,
            )
            for t in spec.volume_claim_templates
        ),
        ordered=spec.pod_management_policy == "OrderedReady",
        on_delete=spec.update_strategy.type == "OnDelete",
        partition=rolling.partition,
        delete_when_deleted=retention.when_deleted == "Delete",
        delete_when_scaled=retention.when_scaled == "Delete",
    )
    # One replica at a time, never two copies of one ordinal (the workload is exclusive).
    return {
        "replicas": spec.replicas,
        "min_ready_s": spec.min_ready_seconds,
        "max_unavailable": 1,
        "max_surge": 0,
        "stateful": stateful,
    }
