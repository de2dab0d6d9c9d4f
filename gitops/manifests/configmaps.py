"""ConfigMaps: their documents, the references pods make to them and to node secrets, and resolution.

A pod's references are parsed with its file (``model.ConfigMapRef`` placeholders, which keep
where they were written); ``resolve`` replaces them with the values once every file of the
revision is read, so a workload's spec hash covers exactly the keys it uses and every node
computes the same. Secrets stay references: they are read on the node (``secrets.py``).
"""

from __future__ import annotations

import base64
import difflib
from collections.abc import Iterable, Mapping

from gitops import model
from gitops.manifests import kube
from gitops.manifests.issues import Issues
from gitops.manifests.yamlsafe import Path, format_path, line_of
from gitops.references import Rewrite, uses_references


def config_map(doc: kube.ConfigMap, file: str, line: int | None) -> model.ConfigMap:
    """The resolved ConfigMap of one document."""
    return model.ConfigMap(
        namespace=doc.metadata.namespace,
        name=doc.metadata.name,
        file=file,
        line=line,
        data=doc.data or {},
        binary_data=doc.binary_data or {},
        immutable=doc.immutable,
    )


def config_ref(name: str, key: str | None, optional: bool, issues: Issues, path: Path) -> model.ConfigMapRef:
    """A placeholder for a ConfigMap (or one key) referenced at ``path`` of the current document."""
    full = issues.base + path
    return model.ConfigMapRef(
        name=name, key=key, optional=optional, field=format_path(full), line=line_of(issues.lines, full)
    )


def env_from(container: kube.Container, issues: Issues, path: Path) -> tuple[model.EnvFrom, ...]:
    """The container's envFrom sources, in order (later sources win, and env wins over all)."""
    out = []
    for index, source in enumerate(container.env_from):
        if source.config_map_ref is not None:
            ref = source.config_map_ref
            cpath = (*path, "envFrom", index, "configMapRef")
            config = config_ref(ref.name, None, ref.optional, issues, cpath)
            out.append(model.EnvFrom(prefix=source.prefix, config=config))
        elif source.secret_ref is not None:
            secret = model.SecretRef(name=source.secret_ref.name, optional=source.secret_ref.optional)
            out.append(model.EnvFrom(prefix=source.prefix, secret=secret))
    return tuple(out)


_Source = kube.ConfigMapVolumeSource | kube.ConfigMapProjection | kube.SecretVolumeSource | kube.SecretProjection


def file_volume(volume: kube.Volume, issues: Issues, path: Path) -> model.FileVolume | None:
    """The files of a configMap, secret or projected volume; None for other volume types."""
    sources: list[tuple[_Source, Path]]
    if volume.config_map is not None:
        mode, sources = volume.config_map.default_mode, [(volume.config_map, (*path, "configMap"))]
    elif volume.secret is not None:
        mode, sources = volume.secret.default_mode, [(volume.secret, (*path, "secret"))]
    elif volume.projected is not None:
        mode, sources = volume.projected.default_mode, []
        for index, projection in enumerate(volume.projected.sources):
            where = (*path, "projected", "sources", index)
            if projection.config_map is not None:
                sources.append((projection.config_map, (*where, "configMap")))
            elif projection.secret is not None:
                sources.append((projection.secret, (*where, "secret")))
    else:
        return None
    files = [f for source, where in sources for f in _files(source, mode, issues, where)]
    seen: set[str] = set()
    for f in files:
        if f.path and f.path in seen:
            issues.error(path, f"volume '{volume.name}' writes '{f.path}' twice", "give each item its own path")
        seen.add(f.path)
    return model.FileVolume(name=volume.name, files=tuple(files))


def _files(source: _Source, mode: int, issues: Issues, path: Path) -> list[model.VolumeFile]:
    # Without items, every key of the source becomes a file named after it.
    wanted: list[tuple[str | None, str, int, Path]] = [(None, "", mode, path)]
    if source.items:
        wanted = [
            (i.key, i.path, mode if i.mode is None else i.mode, (*path, "items", n)) for n, i in enumerate(source.items)
        ]
    out = []
    for key, file_path, file_mode, where in wanted:
        if isinstance(source, kube.SecretVolumeSource | kube.SecretProjection):
            name = source.secret_name if isinstance(source, kube.SecretVolumeSource) else source.name
            secret = model.SecretRef(name=name, key=key, optional=source.optional)
            out.append(model.VolumeFile(path=file_path, mode=file_mode, secret=secret))
        else:
            config = config_ref(source.name, key, source.optional, issues, where)
            out.append(model.VolumeFile(path=file_path, mode=file_mode, config=config))
    return out


class _Unresolved(Exception):
    def __init__(self, ref: model.ConfigMapRef, message: str, hint: str | None = None):
        super().__init__(message)
        self.ref, self.message, self.hint = ref, message, hint


class _Resolver:
    """Looks references of one workload up in the revision's ConfigMaps."""

    def __init__(self, namespace: str, maps: Mapping[tuple[str, str], model.ConfigMap], invalid: frozenset[str]):
        self.namespace, self.maps, self.invalid = namespace, maps, invalid

    def find(self, ref: model.ConfigMapRef) -> model.ConfigMap | None:
        found = self.maps.get((self.namespace, ref.name))
        if found is None and not ref.optional:
            key = f"{self.namespace}/ConfigMap/{ref.name}"
            if key in self.invalid:
                raise _Unresolved(ref, f"ConfigMap {key} did not validate", "fix the errors reported for it")
            raise _Unresolved(
                ref,
                f"ConfigMap '{ref.name}' is not in namespace '{self.namespace}' in this revision",
                "add the ConfigMap to the repository, or set optional: true",
            )
        return found

    def value(self, cm: model.ConfigMap, ref: model.ConfigMapRef) -> bytes | None:
        assert ref.key is not None
        if ref.key in cm.data:
            return cm.data[ref.key].encode()
        if ref.key in cm.binary_data:
            return base64.b64decode(cm.binary_data[ref.key])
        if ref.optional:
            return None
        keys = sorted([*cm.data, *cm.binary_data])
        close = difflib.get_close_matches(ref.key, keys, n=1)
        raise _Unresolved(
            ref,
            f"ConfigMap '{cm.name}' has no key '{ref.key}' (keys: {', '.join(keys) or 'none'}; "
            f"defined at {cm.file}:{cm.line})",
            f"did you mean '{close[0]}'?" if close else "add the key, or set optional: true",
        )

    def env(self, var: model.EnvVar) -> Iterable[model.EnvVar]:
        if var.config is None:
            return (var,)
        cm = self.find(var.config)
        raw = None if cm is None else self.value(cm, var.config)
        # As the kubelet does, a missing optional key leaves the variable unset.
        return () if raw is None else (model.EnvVar(name=var.name, value=raw.decode(errors="replace")),)

    def env_from(self, source: model.EnvFrom) -> Iterable[model.EnvFrom]:
        if source.config is None:
            return (source,)
        cm = self.find(source.config)
        if cm is None:
            return ()
        return (model.EnvFrom(prefix=source.prefix, values=tuple(sorted(cm.data.items()))),)

    def file(self, f: model.VolumeFile) -> Iterable[model.VolumeFile]:
        if f.config is None:
            return (f,)
        cm = self.find(f.config)
        if cm is None:
            return ()
        if f.config.key is None:
            keys = sorted([*cm.data, *cm.binary_data])
            refs = [(key, f.config.model_copy(update={"key": key})) for key in keys]
        else:
            refs = [(f.path, f.config)]
        out = []
        for file_path, ref in refs:
            raw = self.value(cm, ref)
            if raw is not None:
                content = base64.b64encode(raw).decode()
                out.append(model.VolumeFile(path=file_path, mode=f.mode, content=content))
        return out


def resolve(
    workloads: Iterable[model.Workload], config_maps: Iterable[model.ConfigMap], invalid: Iterable[str] = ()
) -> tuple[list[model.Workload], list[model.ManifestError]]:
    """Workloads with their ConfigMap references replaced by values; those that do not resolve become errors."""
    maps = {(cm.namespace, cm.name): cm for cm in config_maps}
    bad = frozenset(invalid)
    out: list[model.Workload] = []
    errors: list[model.ManifestError] = []
    for w in workloads:
        if not uses_references(w.pod):
            out.append(w)
            continue
        r = _Resolver(w.namespace, maps, bad)
        try:
            pod = Rewrite(env=r.env, env_from=r.env_from, file=r.file).pod(w.pod)
        except _Unresolved as e:
            errors.append(
                model.ManifestError(file=w.file, line=e.ref.line, field=e.ref.field, message=e.message, hint=e.hint)
            )
            continue
        out.append(w if pod is w.pod else w.model_copy(update={"pod": pod}))
    return out, errors
