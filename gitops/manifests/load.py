"""Parsing manifest files into workloads, and combining the files of one revision."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from gitops.manifests import claims, configmaps, kube
from gitops.manifests.autoscaler import convert_autoscaler, resolve_autoscalers
from gitops.manifests.fields import KubeModel, ignored_fields
from gitops.manifests.issues import Issues
from gitops.manifests.names import generated_name
from gitops.manifests.service import convert_service
from gitops.manifests.workload import convert_workload
from gitops.manifests.yamlsafe import Document, Path, YamlError, load_documents
from gitops.model import (
    Autoscaler,
    Claim,
    ClusterSpec,
    ConfigMap,
    FileResult,
    ManifestError,
    ManifestSet,
    Service,
    VolumeRelease,
    Workload,
)
from gitops.services.allocate import allocate, with_endpoint_ips

_Doc = TypeVar("_Doc", ConfigMap, Claim, VolumeRelease, Service, Autoscaler)
_Model = TypeVar("_Model", bound=KubeModel)

# The invalid_keys entry for a Cluster document that did not validate: keep the last valid settings.
CLUSTER_KEY = "gitops/Cluster"
_CLUSTER_TYPE = ("gitops/v1", "Cluster")
# Retired API versions whose fields are a subset of the current one's: read them as the current one.
_RETIRED = {("batch/v1beta1", "CronJob")}
_SUPPORTED = (
    "gitops runs apps/v1 Deployment, DaemonSet and StatefulSet, batch/v1 Job and CronJob, "
    "and reads v1 ConfigMap, Service and PersistentVolumeClaim and autoscaling/v2 HorizontalPodAutoscaler"
)
_AUTOSCALERS: dict[str, type[kube.HorizontalPodAutoscaler | kube.HorizontalPodAutoscalerV1]] = {
    "autoscaling/v2": kube.HorizontalPodAutoscaler,
    "autoscaling/v1": kube.HorizontalPodAutoscalerV1,
}


def is_manifest_path(path: str) -> bool:
    """Whether a repository path is a manifest: ``*.yaml``/``*.yml`` outside dot-directories."""
    parts = path.replace("\\", "/").split("/")
    return parts[-1].endswith((".yaml", ".yml")) and not any(p.startswith(".") for p in parts if p)


class _FileParse:
    def __init__(self, path: str) -> None:
        self.path = path
        self.issues = Issues(path, {})
        self.workloads: list[Workload] = []
        self.config_maps: list[ConfigMap] = []
        self.claims: list[Claim] = []
        self.releases: list[VolumeRelease] = []
        self.services: list[Service] = []
        self.autoscalers: list[Autoscaler] = []
        self.clusters: list[tuple[ClusterSpec, int | None]] = []
        self.invalid_keys: list[str] = []
        self.unreadable = False
        self.documents = 0

    def document(self, doc: Document) -> None:
        issues = self.issues.at((), doc.lines)
        for problem in doc.issues:
            issues.error(problem.path, problem.message, line=problem.line)
        if doc.data is not None:
            self.obj(doc.data, (), issues, bool(doc.issues))
        self.documents += 1

    def obj(self, data: object, path: Path, issues: Issues, broken: bool) -> None:
        issues = issues.at(path, issues.lines)
        if not isinstance(data, dict):
            issues.error((), "a document must be a mapping with apiVersion and kind")
            self.unreadable = True
            return
        api, kind = data.get("apiVersion"), data.get("kind")
        if not isinstance(api, str) or not isinstance(kind, str):
            issues.error((), "a document needs string apiVersion and kind fields")
            self.unreadable = True
            return
        if (api, kind) == ("v1", "List") and isinstance(data.get("items"), list):
            for index, item in enumerate(data["items"]):
                self.obj(item, (*path, "items", index), issues, broken)
            return
        if (api, kind) == _CLUSTER_TYPE:
            self.cluster(data, issues, broken)
        elif kind in kube.WORKLOAD_MODELS:
            self.workload(data, api, kind, issues, broken)
        elif (api, kind) == ("v1", "ConfigMap"):
            self.config_map(data, issues, broken)
        elif (api, kind) == ("gitops/v1", "VolumeRelease"):
            self.release(data, issues, broken)
        elif (api, kind) == ("v1", "PersistentVolumeClaim"):
            self.claim(data, issues, broken)
        elif (api, kind) == ("v1", "Service"):
            self.service(data, issues, broken)
        elif kind == "HorizontalPodAutoscaler":
            self.autoscaler(data, api, issues, broken)
        elif (api, kind) == ("v1", "Secret"):
            issues.error(
                (),
                "Secret documents are refused: secrets live on the nodes, never in Git",
                "remove it and put each key in a file <secrets_dir>/<namespace>/<name>/<key> on every node; "
                "see docs/operations.md, Secrets",
            )
        else:
            issues.warn((), f"skipped {kind} ({api}): {_SUPPORTED}")

    def workload(self, data: dict[str, Any], api: str, kind: str, issues: Issues, broken: bool) -> None:
        expected, model = kube.WORKLOAD_MODELS[kind]
        data = _with_generated_name(data, f"{self.path}#{self.documents}{''.join(f'/{p}' for p in issues.base)}")
        key = _raw_key(data, kind)
        if key is None:
            self.unreadable = True  # we cannot tell which workload this was, so keep all of this file's
        before = len(issues.errors)
        if (api, kind) in _RETIRED:
            issues.warn(("apiVersion",), f"{api} {kind} was removed in Kubernetes 1.25; read as {expected}")
        if api != expected and (api, kind) not in _RETIRED:
            issues.error(("apiVersion",), f"{api} {kind} is not supported", f"use apiVersion: {expected}")
        else:
            doc = _validate(model, data, issues)
            line = issues.lines.get(issues.base)
            workload = convert_workload(doc, self.path, line, issues) if doc is not None else None
            if workload is not None and not broken and len(issues.errors) == before:
                _warn_ignored(doc, issues)
                self.workloads.append(workload)
                return
        if key is not None:
            self.invalid_keys.append(key)

    def config_map(self, data: dict[str, Any], issues: Issues, broken: bool) -> None:
        doc = self._document(kube.ConfigMap, "ConfigMap", data, issues, broken)
        if doc is not None:
            _warn_ignored(doc, issues)
            self.config_maps.append(configmaps.config_map(doc, self.path, issues.lines.get(issues.base)))

    def claim(self, data: dict[str, Any], issues: Issues, broken: bool) -> None:
        doc = self._document(kube.PersistentVolumeClaim, "PersistentVolumeClaim", data, issues, broken)
        if doc is not None:
            _warn_ignored(doc, issues)
            self.claims.append(claims.claim(doc, self.path, issues.lines.get(issues.base)))

    def release(self, data: dict[str, Any], issues: Issues, broken: bool) -> None:
        doc = self._document(kube.VolumeRelease, "VolumeRelease", data, issues, broken)
        if doc is not None:
            self.releases.append(claims.release(doc, self.path, issues.lines.get(issues.base)))

    def _document(
        self, model: type[_Model], kind: str, data: dict[str, Any], issues: Issues, broken: bool
    ) -> _Model | None:
        """The validated document, or None after recording its key as invalid (when it has one)."""
        doc: _Model | None = _validate(model, data, issues)
        if doc is None or broken:
            self._invalid(data, kind)
            return None
        return doc

    def _invalid(self, data: dict[str, Any], kind: str) -> None:
        """Record the document's key (when it has one) as invalid: its last valid version stays in force."""
        key = _raw_key(data, kind)
        if key is not None:
            self.invalid_keys.append(key)

    def service(self, data: dict[str, Any], issues: Issues, broken: bool) -> None:
        before = len(issues.errors)
        doc = _validate(kube.Service, data, issues)
        service = convert_service(doc, self.path, issues.lines.get(issues.base), issues) if doc is not None else None
        if service is None or broken or len(issues.errors) > before:
            self._invalid(data, "Service")
            return
        _warn_ignored(doc, issues)
        self.services.append(service)

    def autoscaler(self, data: dict[str, Any], api: str, issues: Issues, broken: bool) -> None:
        before = len(issues.errors)
        model = _AUTOSCALERS.get(api)
        doc: kube.HorizontalPodAutoscaler | kube.HorizontalPodAutoscalerV1 | None = None
        if model is None:
            issues.error(("apiVersion",), f"{api} HorizontalPodAutoscaler is not supported", "use autoscaling/v2")
        else:
            doc = _validate(model, data, issues)
        found = None if doc is None else convert_autoscaler(doc, self.path, issues.lines.get(issues.base), issues)
        if doc is None or found is None or broken or len(issues.errors) > before:
            self._invalid(data, "HorizontalPodAutoscaler")
            return
        _warn_ignored(doc, issues)
        self.autoscalers.append(found)

    def cluster(self, data: dict[str, Any], issues: Issues, broken: bool) -> None:
        doc = _validate(kube.Cluster, data, issues)
        if doc is None or broken:
            self.invalid_keys.append(CLUSTER_KEY)
            return
        spec = ClusterSpec(
            heartbeat_seconds=doc.spec.heartbeat_seconds,
            node_timeout_seconds=doc.spec.node_timeout_seconds,
            cordoned=tuple(doc.spec.cordoned),
            service_cidr=doc.spec.service_cidr,
        )
        self.clusters.append((spec, issues.lines.get(issues.base)))

    def result(self) -> FileResult:
        counts = Counter(w.key for w in self.workloads)
        duplicates = {key for key, count in counts.items() if count > 1}
        for workload in self.workloads:
            if workload.key in duplicates:
                self.issues.errors.append(_duplicate_error(workload.file, workload.line, workload.key, "this file"))
        cluster = self.clusters[0][0] if len(self.clusters) == 1 else None
        if len(self.clusters) > 1:
            lines = ", ".join(str(line) for _, line in self.clusters)
            self.issues.errors.append(
                ManifestError(
                    file=self.path, line=self.clusters[1][1], message=f"more than one Cluster (lines {lines})"
                )
            )
            self.invalid_keys.append(CLUSTER_KEY)
        return FileResult(
            workloads=tuple(w for w in self.workloads if w.key not in duplicates),
            config_maps=tuple(self.config_maps),
            claims=tuple(self.claims),
            releases=tuple(self.releases),
            services=tuple(self.services),
            autoscalers=tuple(self.autoscalers),
            cluster=cluster,
            errors=tuple(self.issues.errors),
            warnings=tuple(self.issues.warnings),
            invalid_keys=tuple(dict.fromkeys([*self.invalid_keys, *sorted(duplicates)])),
            unreadable=self.unreadable,
        )


def parse_file(path: str, data: bytes) -> FileResult:
    """Every workload, Cluster, error and warning in one manifest file; pure in (path, data)."""
    parse = _FileParse(path)
    try:
        documents = load_documents(data)
    except YamlError as exc:
        error = ManifestError(file=path, line=exc.line, message=exc.message)
        return FileResult(errors=(error,), unreadable=True)
    for doc in documents:
        parse.document(doc)
    return parse.result()


def combine(results: Mapping[str, FileResult]) -> ManifestSet:
    """All manifests of one revision: files in path order, duplicates and extra Clusters as errors."""
    files = sorted(results)
    by_key: dict[str, list[Workload]] = {}
    errors: list[ManifestError] = []
    clusters: list[tuple[str, ClusterSpec]] = []
    for name in files:
        result = results[name]
        errors.extend(result.errors)
        for workload in result.workloads:
            by_key.setdefault(workload.key, []).append(workload)
        if result.cluster is not None:
            clusters.append((name, result.cluster))
    invalid = [key for name in files for key in results[name].invalid_keys]
    config_maps = _unique([cm for name in files for cm in results[name].config_maps], errors, invalid)
    found_claims = _unique([c for name in files for c in results[name].claims], errors, invalid)
    releases = _unique([r for name in files for r in results[name].releases], errors, invalid)
    workloads: list[Workload] = []
    for key, found in by_key.items():
        if len(found) == 1:
            workloads.append(found[0])
            continue
        places = ", ".join(f"{w.file}:{w.line}" for w in found)
        errors.extend(_duplicate_error(w.file, w.line, w.key, places) for w in found)
        invalid.append(key)
    # A workload whose ConfigMaps or claims do not resolve is invalid: it keeps its last valid spec.
    resolved, unresolved = configmaps.resolve(workloads, config_maps, invalid)
    resolved, unclaimed = claims.resolve(resolved, found_claims, invalid)
    kept = {w.key for w in resolved}
    invalid.extend(w.key for w in workloads if w.key not in kept)
    errors.extend([*unresolved, *unclaimed])
    workloads = resolved
    cluster = ClusterSpec()
    if len(clusters) == 1:
        cluster = clusters[0][1]
    elif clusters:
        names = ", ".join(name for name, _ in clusters)
        errors.extend(
            ManifestError(file=name, message=f"more than one Cluster document ({names})", hint="keep exactly one")
            for name, _ in clusters
        )
        invalid.append(CLUSTER_KEY)
    services = _unique([s for name in files for s in results[name].services], errors, invalid)
    allocated, unallocated = allocate(services, cluster.service_cidr)
    allocated = with_endpoint_ips(allocated, workloads, cluster.service_cidr)
    errors.extend(unallocated)
    autoscalers, scaling_warnings = resolve_autoscalers(
        _unique([a for name in files for a in results[name].autoscalers], errors, invalid), workloads, errors, invalid
    )
    allocated_keys = {s.key for s in allocated}
    # Addresses depend on serviceCidr: with the Cluster document broken, every Service keeps what it had.
    invalid.extend(s.key for s in services if s.key not in allocated_keys or CLUSTER_KEY in invalid)
    return ManifestSet(
        workloads=tuple(sorted(workloads, key=lambda w: w.key)),
        config_maps=tuple(config_maps),
        claims=tuple(sorted(found_claims, key=lambda c: c.key)),
        releases=tuple(sorted(releases, key=lambda r: r.key)),
        services=tuple(sorted(allocated, key=lambda s: s.key)),
        autoscalers=tuple(sorted(autoscalers, key=lambda a: a.key)),
        cluster=cluster,
        errors=tuple(errors),
        warnings=(*(w for name in files for w in results[name].warnings), *scaling_warnings),
        invalid_keys=tuple(dict.fromkeys(invalid)),
        unreadable_files=tuple(name for name in files if results[name].unreadable),
    )


def _unique(found: list[_Doc], errors: list[ManifestError], invalid: list[str]) -> list[_Doc]:
    """The documents defined once; each one defined more than once is an error and invalid."""
    by_key: dict[str, list[_Doc]] = {}
    for doc in found:
        by_key.setdefault(doc.key, []).append(doc)
    unique = []
    for key, docs in by_key.items():
        if len(docs) == 1:
            unique.append(docs[0])
            continue
        places = ", ".join(f"{d.file}:{d.line}" for d in docs)
        errors.extend(_duplicate_error(d.file, d.line, key, places) for d in docs)
        invalid.append(key)
    return unique


def _warn_ignored(doc: KubeModel, issues: Issues) -> None:
    for path, why in ignored_fields(doc):
        issues.warn(path, f"ignored: {why}")


def _validate(model: type[KubeModel], data: dict[str, Any], issues: Issues) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues.validation_error(exc, model)
        return None


def _with_generated_name(data: dict[str, Any], seed: str) -> dict[str, Any]:
    """``data`` with ``metadata.name`` derived from ``generateName`` where only that is set."""
    meta = data.get("metadata")
    if not isinstance(meta, dict) or "name" in meta or not isinstance(meta.get("generateName"), str):
        return data
    return {**data, "metadata": {**meta, "name": generated_name(meta["generateName"], seed)}}


def _raw_key(data: dict[str, Any], kind: str) -> str | None:
    meta = data.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    namespace = meta.get("namespace", "default")
    return f"{namespace if isinstance(namespace, str) else 'default'}/{kind}/{meta['name']}"


def _duplicate_error(file: str, line: int | None, key: str, where: str) -> ManifestError:
    return ManifestError(
        file=file,
        line=line,
        field="metadata.name",
        message=f"{key} is defined more than once ({where})",
        hint="rename one of them",
    )
