"""Desired state of one revision: manifests parsed by blob id, with the last valid spec kept.

A workload whose document stops validating keeps the spec it had in the newest
earlier version of its file that did validate, found in Git history itself, so the
fallback needs no local database and survives a daemon restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gitops.manifests import configmaps
from gitops.manifests.load import CLUSTER_KEY, combine, is_manifest_path, parse_file
from gitops.manifests.scopes import compose
from gitops.manifests.yamlsafe import Limits
from gitops.model import FileResult, ManifestError, ManifestSet, Workload
from gitops.source import GitSource, TooLarge

log = logging.getLogger(__name__)

HISTORY_DEPTH = 50
# The size limit parse_file applies, enforced before a blob leaves Git.
MAX_MANIFEST_BYTES = Limits().max_bytes


class DesiredLoader:
    """Parses revisions through a cache keyed by (path, blob id)."""

    def __init__(self, source: GitSource):
        self.source = source
        self._files: dict[tuple[str, str], FileResult] = {}
        self._revisions: dict[str, ManifestSet] = {}

    def load(self, rev: str, held: Mapping[str, str] | None = None) -> ManifestSet:
        """All manifests at ``rev``, each invalid workload replaced by its last valid spec.

        ``held`` (team namespaces, docs/security.md) maps scopes to the older revision each runs.
        """
        held = held or {}
        msets = {r: self._load(r) for r in {rev, *held.values()}}
        self._revisions = msets
        return compose(msets[rev], {scope: msets[r] for scope, r in held.items()})

    def _load(self, rev: str) -> ManifestSet:
        cached = self._revisions.get(rev)
        if cached is not None:
            return cached
        entries = [e for e in self.source.list_files(rev) if is_manifest_path(e.path)]
        missing = [e.blob for e in entries if (e.path, e.blob) not in self._files]
        blobs = self.source.read_blobs(missing, MAX_MANIFEST_BYTES)
        results: dict[str, FileResult] = {}
        live_keys: set[tuple[str, str]] = set()
        for e in entries:
            k = (e.path, e.blob)
            if k not in self._files:
                self._files[k] = _parse(e.path, blobs.get(e.blob, b""))
            results[e.path] = self._files[k]
            live_keys.add(k)
        mset = combine(self._with_config_fallbacks(rev, results))
        mset = self._with_fallbacks(rev, mset, results)
        # Entries for blobs no longer at head are kept only while history lookups may want them.
        if len(self._files) > 4 * max(len(live_keys), 256):
            self._files = {k: v for k, v in self._files.items() if k in live_keys}
        return mset

    def _with_config_fallbacks(self, rev: str, results: dict[str, FileResult]) -> dict[str, FileResult]:
        """``results`` with each invalid ConfigMap (or all of an unreadable file's) as its newest valid version.

        Workloads then resolve against it, so a typo in a ConfigMap rolls nothing and stops nothing.
        """
        out = dict(results)
        for path, res in sorted(results.items()):
            wanted = {k for k in res.invalid_keys if "/ConfigMap/" in k}
            if not wanted and not res.unreadable:
                continue
            found = {cm.key: cm for cm in res.config_maps}
            whole_file = res.unreadable
            for blob in self.source.path_history(rev, path, HISTORY_DEPTH):
                old = self._parsed(path, blob)
                if old.unreadable:
                    continue
                if whole_file:
                    # What the newest readable version held, valid or not, is what the file holds.
                    wanted |= {cm.key for cm in old.config_maps} | {k for k in old.invalid_keys if "/ConfigMap/" in k}
                    whole_file = False
                for cm in old.config_maps:
                    if cm.key in wanted and cm.key not in found:
                        found[cm.key] = cm
                if wanted <= set(found):
                    break
            out[path] = res.model_copy(update={"config_maps": tuple(found.values())})
        return out

    def _parsed(self, path: str, blob: str) -> FileResult:
        k = (path, blob)
        if k not in self._files:
            self._files[k] = _parse(path, self.source.read_blobs([blob], MAX_MANIFEST_BYTES).get(blob, b""))
        return self._files[k]

    def _with_fallbacks(self, rev: str, mset: ManifestSet, results: dict[str, FileResult]) -> ManifestSet:
        """Add, for every invalid workload, its newest valid spec from the file's history."""
        have = {w.key for w in mset.workloads}
        extra: list[Workload] = []
        recovered: set[str] = set()
        cluster = mset.cluster
        for path, res in sorted(results.items()):
            wanted = set(res.invalid_keys) - have
            whole_file = path in mset.unreadable_files
            if not wanted and not whole_file:
                continue
            for blob in self.source.path_history(rev, path, HISTORY_DEPTH):
                old = self._parsed(path, blob)
                if old.errors and not old.workloads and old.cluster is None:
                    continue
                # An unreadable file may have held the Cluster document: keep its last settings
                # (a typo must not uncordon every node or reset the timeouts).
                if (CLUSTER_KEY in wanted or whole_file) and old.cluster is not None and CLUSTER_KEY not in recovered:
                    cluster = old.cluster
                    recovered.add(CLUSTER_KEY)
                for w in old.workloads:
                    if w.key in have or w.key in recovered:
                        continue
                    if whole_file or w.key in wanted:
                        extra.append(w)
                        recovered.add(w.key)
                # Older versions are searched only for what is still missing (a workload may have
                # been invalid in the newer ones too).
                if whole_file or not (wanted - recovered):
                    break
        # Older specs read today's ConfigMaps; one that no longer resolves stays invalid (its containers are kept).
        resolved, _ = configmaps.resolve(extra, mset.config_maps, mset.invalid_keys)
        recovered -= {w.key for w in extra} - {w.key for w in resolved}
        extra = resolved
        if extra:
            log.warning("keeping last valid spec of %s", ", ".join(sorted(recovered)))
        return mset.model_copy(
            update={
                "workloads": tuple(sorted((*mset.workloads, *extra), key=lambda w: w.key)),
                "cluster": cluster,
                "invalid_keys": tuple(sorted(set(mset.invalid_keys) - recovered)),
            }
        )


def _parse(path: str, blob: bytes | TooLarge) -> FileResult:
    # A file too big to read is unreadable like one that does not parse: it keeps its workloads.
    if isinstance(blob, TooLarge):
        return FileResult(errors=(ManifestError(file=path, message=str(blob)),), unreadable=True)
    return parse_file(path, blob)
