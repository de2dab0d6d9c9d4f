"""Results of parsing the real-manifest corpus, as the Markdown table in docs/manifests.md.

Run ``python -m tests.unit.manifests.corpus_report`` to print it.
"""

from __future__ import annotations

import re
from pathlib import Path

from gitops.manifests.load import parse_file
from gitops.manifests.types import FileResult

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


if __name__ == "__main__":
    print(table(parse_corpus()))
