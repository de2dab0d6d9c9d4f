"""Scopes of a revision: which namespace (or the cluster-wide Cluster) each document belongs to.

Team namespaces (docs/security.md) decide per scope who may change what runs: a commit's change
is attributed to the scopes whose documents differ before and after it, and a held scope runs the
documents of an older revision while the others follow the tip (``compose``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping

from gitops.manifests import kube
from gitops.manifests.load import CLUSTER_KEY
from gitops.manifests.names import dns_label
from gitops.manifests.yamlsafe import YamlError, load_documents
from gitops.model import ManifestSet

# The scope of the Cluster document; no namespace can be named this (not an RFC 1123 label).
CLUSTER_SCOPE = CLUSTER_KEY
_CLUSTER_TYPE = ("gitops/v1", "Cluster")

# A file's scopes: scope -> digest of that scope's documents in it; None when it cannot be told.
FileScopes = dict[str, str] | None


class _Unattributable(Exception):
    """A document whose scope the loader cannot tell either (it keeps the file's last valid version)."""


def file_scopes(data: bytes | None) -> FileScopes:
    """The scopes of one manifest file's documents with a digest of each; None if it does not parse.

    ``None`` data is an absent file (no scopes). Digests cover the documents' data, not their
    text, so comments, formatting and document order change no scope.
    """
    if data is None:
        return {}
    try:
        documents = load_documents(data)
    except YamlError:
        return None
    found: dict[str, list[str]] = {}
    try:
        for doc in documents:
            if doc.data is not None:
                for scope, obj in _objects(doc.data):
                    found.setdefault(scope, []).append(_digest(obj))
    except _Unattributable:
        return None
    return {scope: _digest(sorted(digests)) for scope, digests in found.items()}


def changed_scopes(before: FileScopes, after: FileScopes) -> frozenset[str]:
    """Scopes whose documents differ between two versions of a file.

    A version that does not parse changes every scope of the other one: the loader keeps the
    last valid documents meanwhile, and whatever the next readable version holds counts as new.
    """
    if before is None and after is None:
        return frozenset()
    if before is None or after is None:
        return frozenset(after or before or {})
    return frozenset(s for s in before.keys() | after.keys() if before.get(s) != after.get(s))


def scope_of_key(key: str) -> str:
    """The scope of a workload key (namespace/kind/name) or of the Cluster's invalid-key entry."""
    return CLUSTER_SCOPE if key == CLUSTER_KEY else key.split("/", 1)[0]


def compose(tip: ManifestSet, held: Mapping[str, ManifestSet]) -> ManifestSet:
    """``tip`` with each held scope's workloads, claims, volume releases and autoscalers (and Cluster) from its
    own revision.

    Claims matter most: a refused commit deleting a claim's document must not delete its volume.

    Errors, warnings and unreadable files stay the tip's: they describe the files as they are now.
    """
    if not held:
        return tip
    workloads = [w for w in tip.workloads if w.namespace not in held]
    workloads += [w for scope, mset in held.items() for w in mset.workloads if w.namespace == scope]
    claims = [c for c in tip.claims if c.namespace not in held]
    claims += [c for scope, mset in held.items() for c in mset.claims if c.namespace == scope]
    releases = [r for r in tip.releases if r.namespace not in held]
    releases += [r for scope, mset in held.items() for r in mset.releases if r.namespace == scope]
    autoscalers = [a for a in tip.autoscalers if a.namespace not in held]
    autoscalers += [a for scope, mset in held.items() for a in mset.autoscalers if a.namespace == scope]
    invalid = [k for k in tip.invalid_keys if scope_of_key(k) not in held]
    invalid += [k for scope, mset in held.items() for k in mset.invalid_keys if scope_of_key(k) == scope]
    cluster = held[CLUSTER_SCOPE].cluster if CLUSTER_SCOPE in held else tip.cluster
    return tip.model_copy(
        update={
            "workloads": tuple(sorted(workloads, key=lambda w: w.key)),
            "claims": tuple(sorted(claims, key=lambda c: c.key)),
            "releases": tuple(sorted(releases, key=lambda r: r.key)),
            "autoscalers": tuple(sorted(autoscalers, key=lambda a: a.key)),
            "cluster": cluster,
            "invalid_keys": tuple(dict.fromkeys(invalid)),
        }
    )


def _objects(data: object) -> Iterator[tuple[str, object]]:
    """(scope, object) for each object of a document, List items one by one."""
    if not isinstance(data, dict):
        raise _Unattributable
    api, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str):
        raise _Unattributable
    if (api, kind) == ("v1", "List") and isinstance(data.get("items"), list):
        for item in data["items"]:
            yield from _objects(item)
        return
    if (api, kind) == _CLUSTER_TYPE:
        yield CLUSTER_SCOPE, data
        return
    meta = data.get("metadata")
    if kind in kube.WORKLOAD_MODELS and (not isinstance(meta, dict) or not isinstance(meta.get("name"), str)):
        raise _Unattributable  # the loader cannot tell which workload this is either
    namespace = meta.get("namespace", "default") if isinstance(meta, dict) else "default"
    # As the loader: a namespace that is not a string is read as default.
    namespace = namespace if isinstance(namespace, str) else "default"
    try:
        yield dns_label(namespace), data
    except ValueError:
        return  # an invalid namespace never validates: nothing of it can run, now or from history


def _digest(obj: object) -> str:
    try:
        text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    except TypeError:  # keys of mixed types cannot be sorted; repr is deterministic, if order-sensitive
        text = repr(obj)
    return hashlib.sha256(text.encode()).hexdigest()
