"""Which pods a Service selects: pure, so the pass's policy may ask without importing the data path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gitops.identity import WorkloadKey
from gitops.model import Service, Workload


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a Service selector matches pod labels (an empty selector matches none: no endpoints)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selected(services: Sequence[Service], workloads: Sequence[Workload]) -> frozenset[WorkloadKey]:
    """The workloads whose pods some Service of their namespace selects."""
    return frozenset(
        w.key
        for w in workloads
        if any(s.namespace == w.namespace and selects(s.selector, w.pod_labels) for s in services)
    )
