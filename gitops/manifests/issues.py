"""Collecting the errors and warnings of one document, each with its file, line and field path."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gitops.manifests.fields import fields_by_alias, model_at
from gitops.manifests.yamlsafe import Path, format_path, line_of
from gitops.model import ManifestError

DOCS_HINT = "see docs/manifests.md for the supported Kubernetes subset"


@dataclass
class Issues:
    """Errors and warnings of one file; paths are relative to the document at ``base``."""

    file: str
    lines: Mapping[Path, int]
    base: Path = ()
    errors: list[ManifestError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def at(self, base: Path, lines: Mapping[Path, int]) -> Issues:
        """The same collector, for the document at ``base`` with line table ``lines``."""
        return Issues(self.file, lines, base, self.errors, self.warnings)

    def error(self, path: Path, message: str, hint: str | None = None, line: int | None = None) -> None:
        """Record an error at ``path`` of the current document (at ``line`` if given, else the path's)."""
        full = self.base + path
        self.errors.append(
            ManifestError(
                file=self.file,
                line=line or line_of(self.lines, full),
                field=format_path(full) or None,
                message=message,
                hint=hint,
            )
        )

    def warn(self, path: Path, message: str) -> None:
        """Record a warning at ``path`` of the current document."""
        full = self.base + path
        line = line_of(self.lines, full)
        where = self.file if line is None else f"{self.file}:{line}"
        name = format_path(full)
        self.warnings.append(f"{where}: {name}: {message}" if name else f"{where}: {message}")

    def validation_error(self, exc: ValidationError, root: type[BaseModel]) -> None:
        """Record every error pydantic found while validating a document as ``root``."""
        for details in exc.errors(include_url=False):
            path = tuple(details["loc"])
            message, hint = describe(details, root)
            self.error(path, message, hint)


def describe(details: ErrorDetails, root: type[BaseModel]) -> tuple[str, str | None]:
    """A user-facing (message, hint) for one pydantic error found below ``root``."""
    kind, value, loc = details["type"], details.get("input"), tuple(details["loc"])
    ctx = details.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1]}'", _did_you_mean(root, loc)
    if kind == "missing":
        return "required field is missing", None
    if kind == "refused":
        return str(ctx["what"]), None
    if kind == "invalid":
        return str(ctx["why"]), None
    message = details["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        message = "must be a mapping"
    if _is_scalar(value) and kind not in ("value_error",):
        message = f"{message} (got {value!r})"
    if kind == "string_type" and isinstance(value, int | float | bool):
        return message, f'quote it: "{str(value).lower() if isinstance(value, bool) else value}"'
    if kind in ("int_type", "int_parsing") and isinstance(value, str):
        return message, "write the number without quotes" if value.strip().isdigit() else None
    if kind == "bool_type" and isinstance(value, str):
        return message, "write true or false without quotes"
    return message, None


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 80


def _did_you_mean(root: type[BaseModel], loc: Path) -> str:
    parent = model_at(root, loc[:-1])
    key = str(loc[-1])
    if parent is not None:
        close = difflib.get_close_matches(key, list(fields_by_alias(parent)), n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'?"
    return DOCS_HINT
