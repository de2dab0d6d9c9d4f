"""Hostile-input-safe YAML loading that remembers the line of every key and item.

Documents are composed from the parser's event stream by an iterative composer
rather than by PyYAML's recursive one, so nesting depth, alias expansion and
duplicate keys are checked while reading and a deeply nested file can neither
overflow the stack nor make us build a billion-node structure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import yaml
from yaml import events

Path = tuple[str | int, ...]
Scalar = str | int | float | bool | None

_Base: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
# Kubernetes reads YAML into JSON, so timestamps stay strings and '=' is just text.
_DROPPED_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_COLLECTION_TAGS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, resolving plain scalars the way Kubernetes' JSON view sees them."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_CONSTRUCT = yaml.SafeLoader("")  # only its scalar constructors are used
_NUMBERS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_SCALARS = {
    "tag:yaml.org,2002:null": _CONSTRUCT.construct_yaml_null,
    "tag:yaml.org,2002:bool": _CONSTRUCT.construct_yaml_bool,
    "tag:yaml.org,2002:int": _CONSTRUCT.construct_yaml_int,
    "tag:yaml.org,2002:float": _CONSTRUCT.construct_yaml_float,
    _STR: _CONSTRUCT.construct_yaml_str,
}


@dataclass(frozen=True)
class Limits:
    """Bounds on what one file may make the loader do."""

    max_bytes: int = 1024 * 1024
    max_documents: int = 100
    max_depth: int = 64
    max_alias_nodes: int = 10_000
    # No field needs a longer number, and converting one can take quadratic time
    # (YAML 1.1 base-60 ints like 1:00:00:...) or raise past Python's int digit limit.
    max_number_chars: int = 256


@dataclass(frozen=True)
class YamlIssue:
    """A problem inside one document that does not stop the rest of the file being read."""

    path: Path
    line: int
    message: str


@dataclass(frozen=True)
class Document:
    """One YAML document: its data, and the 1-based line of each key or item by path."""

    data: object
    line: int
    lines: Mapping[Path, int]
    issues: tuple[YamlIssue, ...] = ()


class YamlError(Exception):
    """The file cannot be read as YAML at all."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class _Frame:
    container: dict[str, object] | list[object]
    path: Path
    anchor: str | None
    size: int = 1
    key: str | None = None
    keys: dict[str, int] = field(default_factory=dict)
    merges: list[dict[str, object]] = field(default_factory=list)


def decode(data: bytes, limits: Limits = Limits()) -> str:
    """UTF-8 text of a manifest file, or a YamlError saying why it is not one."""
    if len(data) > limits.max_bytes:
        raise YamlError(f"file is {len(data)} bytes, over the {limits.max_bytes}-byte limit for a manifest")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlError(f"file is not UTF-8 text (byte 0x{data[exc.start]:02x})", line) from None
    nul = text.find("\0")
    if nul >= 0:
        raise YamlError("file contains NUL bytes; it looks binary, not YAML", text.count("\n", 0, nul) + 1)
    return text


def load_documents(data: bytes, limits: Limits = Limits()) -> list[Document]:
    """All documents of a multi-document YAML file; raises YamlError if it cannot be read."""
    text = decode(data, limits)
    loader = _Loader(text)
    try:
        return _Composer(loader, limits).documents()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p]
        raise YamlError("invalid YAML: " + ", ".join(parts), mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        raise YamlError(f"invalid YAML: {exc}".splitlines()[0], line) from None
    finally:
        loader.dispose()


class _Composer:
    def __init__(self, loader: _Loader, limits: Limits) -> None:
        self.loader = loader
        self.limits = limits

    def documents(self) -> list[Document]:
        docs: list[Document] = []
        self.loader.get_event()  # StreamStart
        while not self.loader.check_event(events.StreamEndEvent):
            if len(docs) >= self.limits.max_documents:
                line = self.loader.peek_event().start_mark.line + 1
                raise YamlError(f"more than {self.limits.max_documents} documents in one file", line)
            self.loader.get_event()  # DocumentStart
            docs.append(self._document())
            self.loader.get_event()  # DocumentEnd
        return docs

    def _document(self) -> Document:
        anchors: dict[str, tuple[object, int]] = {}
        lines: dict[Path, int] = {}
        issues: list[YamlIssue] = []
        stack: list[_Frame] = []
        expanded = 0
        root_line = self.loader.peek_event().start_mark.line + 1
        lines[()] = root_line
        while True:
            event = self.loader.get_event()
            line = event.start_mark.line + 1
            top = stack[-1] if stack else None
            if isinstance(event, events.MappingEndEvent | events.SequenceEndEvent):
                assert top is not None
                stack.pop()
                value: object = _finish(top)
                size = top.size
                if top.anchor is not None:
                    anchors[top.anchor] = (value, size)
            elif top is not None and isinstance(top.container, dict) and top.key is None:
                top.key = self._key(event, top, line, issues)
                continue
            else:
                path = _child_path(top)
                if top is not None:
                    lines.setdefault(path, line)
                if isinstance(event, events.AliasEvent):
                    if event.anchor not in anchors:
                        raise YamlError(f"alias *{event.anchor} refers to no complete anchor before it", line)
                    value, size = anchors[event.anchor]
                    expanded += size
                    if expanded > self.limits.max_alias_nodes:
                        raise YamlError(
                            f"aliases expand to more than {self.limits.max_alias_nodes} nodes "
                            "(an alias bomb?); write the repeated parts out",
                            line,
                        )
                elif isinstance(event, events.ScalarEvent):
                    value, size = self._scalar(event, line), 1
                    if event.anchor is not None:
                        anchors[event.anchor] = (value, size)
                elif isinstance(event, events.MappingStartEvent | events.SequenceStartEvent):
                    if len(stack) >= self.limits.max_depth:
                        raise YamlError(f"nesting deeper than {self.limits.max_depth} levels", line)
                    _check_tag(event.tag, line)
                    container: dict[str, object] | list[object]
                    container = {} if isinstance(event, events.MappingStartEvent) else []
                    stack.append(_Frame(container, path, event.anchor))
                    continue
                else:
                    raise YamlError(f"unexpected YAML event {type(event).__name__}", line)
            if not stack:
                return Document(value, root_line, lines, tuple(issues))
            _add(stack[-1], value, size)

    def _key(self, event: events.Event, frame: _Frame, line: int, issues: list[YamlIssue]) -> str:
        if not isinstance(event, events.ScalarEvent):
            raise YamlError("mapping keys must be plain strings, not collections or aliases", line)
        if _is_merge(event):
            return _MERGE
        key = event.value
        if key in frame.keys:
            issues.append(
                YamlIssue((*frame.path, key), line, f"duplicate key '{key}' (first at line {frame.keys[key]})")
            )
        frame.keys.setdefault(key, line)
        return key

    def _scalar(self, event: events.ScalarEvent, line: int) -> Scalar:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        construct = _SCALARS.get(tag)
        if construct is None:
            raise YamlError(f"YAML tag {tag} is not supported; use plain strings, numbers and booleans", line)
        if tag in _NUMBERS and len(event.value) > self.limits.max_number_chars:
            raise YamlError(f"a number of {len(event.value)} characters; at most {self.limits.max_number_chars}", line)
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        value: Scalar = construct(node)
        return value


def _is_merge(event: events.ScalarEvent) -> bool:
    return event.value == "<<" and bool(event.implicit[0]) and event.tag is None


def _check_tag(tag: str | None, line: int) -> None:
    if tag not in _COLLECTION_TAGS:
        raise YamlError(f"YAML tag {tag} is not supported; use plain mappings and lists", line)


def _child_path(frame: _Frame | None) -> Path:
    if frame is None:
        return ()
    if isinstance(frame.container, list):
        return (*frame.path, len(frame.container))
    assert frame.key is not None
    return (*frame.path, frame.key)


def _add(frame: _Frame, value: object, size: int) -> None:
    frame.size += size
    if isinstance(frame.container, list):
        frame.container.append(value)
        return
    key, frame.key = frame.key, None
    assert key is not None
    if key != _MERGE:
        frame.container[key] = value
        return
    sources = value if isinstance(value, list) else [value]
    if not all(isinstance(s, dict) for s in sources):
        raise YamlError(f"merge key '<<' at {_dotted(frame.path)} needs a mapping or a list of mappings")
    frame.merges.extend(s for s in sources if isinstance(s, dict))


def _finish(frame: _Frame) -> object:
    if isinstance(frame.container, list) or not frame.merges:
        return frame.container
    # Earlier merge sources win over later ones; the mapping's own keys win over all.
    merged: dict[str, object] = {}
    for source in reversed(frame.merges):
        merged.update(source)
    merged.update(frame.container)
    return merged


_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _dotted(path: Path) -> str:
    return format_path(path) or "the document root"


def format_path(path: Path) -> str:
    """A field path as users write it: ``spec.containers[0].resources.limits["nvidia.com/gpu"]``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _SIMPLE_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f'["{part}"]')
    return "".join(out)


def line_of(lines: Mapping[Path, int], path: Path) -> int | None:
    """Line of the nearest node at or above ``path`` whose line is known."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
