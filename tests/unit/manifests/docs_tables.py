"""Results of parsing the real-manifest corpus, as the Markdown table in docs/manifests.md.

Run ``python -m tests.unit.manifests.corpus_report`` to print it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from gitops.manifests import kube
from gitops.manifests.fields import Ignore, Refuse, field_marker, fields_by_alias, model_at
from gitops.manifests.load import parse_file
from gitops.model import FileResult

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "k8s-real"
_POD_PREFIX = re.compile(r"^spec\.(jobTemplate\.spec\.)?template\.spec\.")


def corpus_files() -> list[Path]:
    """The corpus manifests, sorted by name."""
    return sorted(CORPUS.glob("*.yaml"))


def parse_corpus() -> dict[str, FileResult]:
    """parse_file over every corpus manifest, by file name."""
    return {path.name: parse_file(path.name, path.read_bytes()) for path in corpus_files()}


def _reason(field: str | None, message: str) -> str:
    if field is None:
        return message
    return _POD_PREFIX.sub("", re.sub(r"\[\d+\]", "[]", field))


def table(results: dict[str, FileResult]) -> str:
    """One Markdown row per file: workloads that validate, refused ones and the fields refused."""
    rows = [
        "| File | Valid | Refused | Other kinds skipped | Refused because of |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        reasons = dict.fromkeys(_reason(e.field, e.message) for e in result.errors)
        skipped = sum("skipped " in w for w in result.warnings)
        refused = len(result.invalid_keys) + (1 if result.unreadable and not result.invalid_keys else 0)
        rows.append(
            f"| `{name}` | {len(result.workloads)} | {refused} | {skipped} | "
            + (", ".join(f"`{r}`" for r in reasons) or "—")
            + " |"
        )
    valid = sum(len(r.workloads) for r in results.values())
    refused_total = sum(len(r.invalid_keys) + (r.unreadable and not r.invalid_keys) for r in results.values())
    clean = sum(not r.errors for r in results.values())
    rows.append(f"| **{len(results)} files, {clean} without errors** | **{valid}** | **{refused_total}** | | |")
    return "\n".join(rows)


def _models() -> list[type[BaseModel]]:
    roots: list[type[BaseModel]] = [
        *(model for _, model in kube.WORKLOAD_MODELS.values()),
        kube.PersistentVolumeClaim,
        kube.Service,
        kube.HorizontalPodAutoscaler,
        kube.HorizontalPodAutoscalerV1,
    ]
    found: list[type[BaseModel]] = []
    while roots:
        model = roots.pop(0)
        if model in found:
            continue
        found.append(model)
        for alias in fields_by_alias(model):
            child = model_at(model, (alias,)) or model_at(model, (alias, 0))
            if child is not None:
                roots.append(child)
    return found


def field_classes(kind: type[Ignore] | type[Refuse]) -> str:
    """Markdown rows (Kubernetes type, field, why) of every field marked ``kind``."""
    rows = ["| Kubernetes type | Field | Why / what to do |", "|---|---|---|"]
    for model in _models():
        for alias, (_, annotation) in fields_by_alias(model).items():
            marker = field_marker(annotation)
            if isinstance(marker, kind):
                why = marker.why if isinstance(marker, Ignore) else marker.what_to_do
                rows.append(f"| {model.__name__} | `{alias}` | {why} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print("Ignored with a warning:\n")
    print(field_classes(Ignore))
    print("\nRefused:\n")
    print(field_classes(Refuse))
    print("\nCorpus:\n")
    print(table(parse_corpus()))
