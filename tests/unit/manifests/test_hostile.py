"""Hostile input: every file gives a clean result with errors, never an exception or a hang."""

from __future__ import annotations

import random
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.manifests import yamlsafe
from gitops.manifests.load import parse_file
from gitops.model import FileResult
from tests.builders import deployment
from tests.unit.manifests.docs_tables import corpus_files

ALIAS_BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def unreadable(data: bytes) -> str:
    started = time.perf_counter()
    result = parse_file("evil.yaml", data)
    assert time.perf_counter() - started < 2
    assert result.unreadable and result.workloads == () and len(result.errors) == 1
    return str(result.errors[0])


def test_alias_bomb() -> None:
    assert "alias" in unreadable(ALIAS_BOMB)


def test_self_referencing_alias() -> None:
    assert "alias *a" in unreadable(b"a: &a [1, *a]\n")


def test_file_size_limit() -> None:
    big = deployment().encode() + b"# " + b"x" * (2 * 1024 * 1024) + b"\n"
    assert "byte limit" in unreadable(big)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deep_nesting(depth: int) -> None:
    # libyaml stops at 1000 levels while scanning; our composer stops at 64.
    assert "nesting" in unreadable(b"a: " + b"[" * depth + b"]" * depth + b"\n")


def test_deep_block_nesting() -> None:
    text = "".join(" " * i + f"k{i}:\n" for i in range(200))
    assert "evil.yaml:65: nesting deeper" in unreadable(text.encode())


@pytest.mark.parametrize("number", [b"1" + b":00" * 300_000, b"9" * 5000, b"0x" + b"f" * 300_000])
def test_number_length_limit(number: bytes) -> None:
    # YAML 1.1 base-60 ints convert in quadratic time; long decimals pass Python's int digit limit.
    assert "a number of" in unreadable(b"a: " + number + b"\n")


def test_document_count_limit() -> None:
    assert "more than 100 documents" in unreadable(b"---\na: 1\n" * 101)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00\x01\x02binary", "NUL bytes"),
        (b"kind: Deployment\nname: caf\xe9\n", "evil.yaml:2: file is not UTF-8"),
        (b"a: b\n\x07\n", "invalid YAML"),
        (b"a: [1, 2\nb: 3\n", "invalid YAML"),
        (b"a: !!python/object:os.system ls\n", "tag:yaml.org,2002:python/object:os.system is not supported"),
        (b"a: !!binary aGVsbG8=\n", "not supported"),
        (b"a: !!set {x}\n", "not supported"),
        (b"just a string\n", "must be a mapping"),
        (b"- a\n- b\n", "must be a mapping"),
        (b"{[a]: 1}\n", "mapping keys must be plain strings"),
    ],
)
def test_junk(data: bytes, words: str) -> None:
    result = parse_file("evil.yaml", data)
    assert result.unreadable and result.workloads == ()
    assert words in str(result.errors[0])


def test_random_bytes() -> None:
    rng = random.Random(1123)
    for _ in range(300):
        result = parse_file("evil.yaml", rng.randbytes(rng.randrange(1, 2000)))
        assert result.errors or result.warnings or result == FileResult()


def test_duplicate_keys_give_both_lines() -> None:
    result = parse_file("dup.yaml", b"apiVersion: v1\nkind: Service\nkind: Namespace\n")
    assert [str(e) for e in result.errors] == ["dup.yaml:3: kind: duplicate key 'kind' (first at line 2)"]


def test_merge_keys_are_followed() -> None:
    data = b"""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: &labels {app: web}}
  template:
    metadata: {labels: *labels}
    spec:
      containers:
      - &base {name: web, image: "nginx:1", resources: {limits: {cpu: 1}}}
      - <<: *base
        name: sidecar
"""
    result = parse_file("m.yaml", data)
    assert [c.name for c in result.workloads[0].pod.containers] == ["web", "sidecar"]
    assert result.workloads[0].pod.cpu_request_millis() == 2000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_any_bytes_parse_without_exceptions(data: bytes) -> None:
    parse_file("fuzz.yaml", data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n ,?0.1")), max_size=200))
def test_yaml_like_text_parses_without_exceptions(text: str) -> None:
    parse_file("fuzz.yaml", text.encode())


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    ),
    st.sampled_from(["spec", "spec.template", "spec.template.spec", "spec.template.spec.containers"]),
)
def test_any_value_anywhere_in_a_deployment_is_an_error_not_an_exception(value: object, where: str) -> None:
    doc = yaml.safe_load(deployment())
    node = doc
    for key in where.split("."):
        node = node[key]
    if isinstance(node, list):
        node.append(value)
    else:
        node["extra"] = value
    result = parse_file("fuzz.yaml", yaml.safe_dump(doc).encode())
    assert all(e.line and e.field for e in result.errors)


def test_pure_python_fallback_reads_like_libyaml() -> None:
    class PythonLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = yamlsafe._Loader.yaml_implicit_resolvers

    for path in corpus_files():
        text = path.read_text()
        fallback = yamlsafe._Composer(PythonLoader(text), yamlsafe.Limits()).documents()
        assert fallback == yamlsafe.load_documents(path.read_bytes()), path.name
    with pytest.raises(yamlsafe.YamlError, match="nesting deeper than 64"):
        yamlsafe._Composer(PythonLoader("a: " + "[" * 5000 + "]" * 5000), yamlsafe.Limits()).documents()
