"""PersistentVolumeClaims: their documents, and checking that each claim a pod mounts is in the revision."""

from __future__ import annotations

from collections.abc import Iterable

from gitops import model
from gitops.manifests import kube


def claim(doc: kube.PersistentVolumeClaim, file: str, line: int | None) -> model.Claim:
    """The resolved claim of one document."""
    return model.Claim(
        namespace=doc.metadata.namespace,
        name=doc.metadata.name,
        file=file,
        line=line,
        storage_bytes=doc.spec.resources.requests.storage,
        storage_class=doc.spec.storage_class_name,
    )


def release(doc: kube.VolumeRelease, file: str, line: int | None) -> model.VolumeRelease:
    """The resolved release of one document."""
    nodes = tuple(sorted(set(doc.spec.nodes)))
    return model.VolumeRelease(
        namespace=doc.metadata.namespace, claim=doc.metadata.name, nodes=nodes, file=file, line=line
    )


def resolve(
    workloads: Iterable[model.Workload], claims: Iterable[model.Claim], invalid: Iterable[str] = ()
) -> tuple[list[model.Workload], list[model.ManifestError]]:
    """Workloads whose claims are all in the revision; each one mounting a missing claim becomes an error.

    A claim whose document is invalid still counts: its volume is kept, so its users keep running.
    """
    known = {c.key for c in claims} | set(invalid)
    out: list[model.Workload] = []
    errors: list[model.ManifestError] = []
    for w in workloads:
        missing = [name for name in w.pod.claims() if f"{w.namespace}/PersistentVolumeClaim/{name}" not in known]
        if w.kind == "DaemonSet" and w.pod.claims():
            message = f"{w.key} mounts PersistentVolumeClaim '{w.pod.claims()[0]}', but a DaemonSet runs on every node"
            hint = "a claim's volume is on one node: use a hostPath, or a Deployment or StatefulSet"
        elif missing:
            message = (
                f"{w.key} mounts PersistentVolumeClaim '{missing[0]}', which is not in namespace "
                f"'{w.namespace}' of the repository"
            )
            hint = "add a v1 PersistentVolumeClaim document with that name"
        else:
            out.append(w)
            continue
        errors.append(
            model.ManifestError(
                file=w.file, line=w.line, field="spec.template.spec.volumes", message=message, hint=hint
            )
        )
    return out, errors
