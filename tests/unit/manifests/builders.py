"""Small manifest texts for tests, with extra fields spliced in at known indentation."""

from __future__ import annotations

import textwrap


def _indent(text: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces) + "\n" if text.strip() else ""


def deployment(
    container: str = "", pod: str = "", spec: str = "", name: str = "web", image: str = "nginx:1.27"
) -> bytes:
    """A valid Deployment; ``container``/``pod``/``spec`` are YAML lines added at that level."""
    text = (
        "apiVersion: apps/v1\n"
        "kind: Deployment\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        "  selector: {matchLabels: {app: web}}\n" + _indent(spec, 2) + "  template:\n"
        "    metadata: {labels: {app: web}}\n"
        "    spec:\n" + _indent(pod, 6) + "      containers:\n"
        "      - name: web\n"
        f"        image: {image}\n" + _indent(container, 8)
    )
    return text.encode()


def job(pod: str = "restartPolicy: Never", spec: str = "", kind: str = "Job") -> bytes:
    """A valid Job (or, with ``kind='CronJob'``, the Job template of a CronJob every minute)."""
    body = (
        "  template:\n"
        "    spec:\n" + _indent(pod, 6) + "      containers:\n"
        "      - {name: main, image: busybox:1.36, command: [sh, -c, 'echo hi']}\n"
    )
    if kind == "Job":
        return f"apiVersion: batch/v1\nkind: Job\nmetadata: {{name: pi}}\nspec:\n{_indent(spec, 2)}{body}".encode()
    nested = textwrap.indent(body, "    ")
    return (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n"
        f"{_indent(spec, 2)}  jobTemplate:\n    spec:\n{nested}"
    ).encode()
