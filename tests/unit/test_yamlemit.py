"""The fast status-record writer: whatever JSON-like data it is given loads back equal, through libyaml and PyYAML."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops import yamlemit

# Strings YAML might read as something else, or that need quoting, escaping or PyYAML's own form.
TRICKY = st.sampled_from(
    [
        "", "yes", "No", "ON", "off", "null", "~", "true", "False", "y", "N", "0", "007", "0x1f", "0b101", "1e5",
        "1.5", ".inf", "-.inf", ".nan", "1:20", "2026-12-01T23:14:05Z", "2026-12-01", "- a", "a: b", "#x", "a #b",
        "&a", "*a", "!t", "%x", "@x", "`x", "|", ">", "'q'", '"q"', "[a]", "{a}", "a,b", "? a", "<<", "=", " lead",
        "trail ", "line\nbreak", "tab\tx", "\x7f", "\x85", "\u2028", "\ufeff", "\x00", "\U0001f600", "é", "a/b.c-d_e",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    TRICKY,
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | TRICKY, inner, max_size=4),
    max_leaves=30,
)
LOADERS = [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text() | TRICKY, DATA, max_size=6))
def test_anything_json_like_loads_back_equal(data: dict[str, Any]) -> None:
    text = yamlemit.dump(data)
    for loader in LOADERS:
        assert yaml.load(text, Loader=loader) == (data or None), text


def test_a_record_reads_as_pyyaml_writes_it_lists_unindented_and_plain_words_unquoted() -> None:
    data = {
        "node": "n1",
        "heartbeat": "2026-12-01T23:14:05Z",
        "labels": {"kubernetes.io/hostname": "n1", "gitops.gpu.count": "0"},
        "taints": [],
        "policy": {"namespaces": {}},
        "workloads": [{"name": "web", "replica": 0, "state": "ready", "message": "a: b"}, {"name": "db"}],
        "verified": False,
    }
    assert yamlemit.dump(data) == (
        "node: n1\n"
        'heartbeat: "2026-12-01T23:14:05Z"\n'
        "labels:\n"
        "  kubernetes.io/hostname: n1\n"
        '  gitops.gpu.count: "0"\n'
        "taints: []\n"
        "policy:\n"
        "  namespaces: {}\n"
        "workloads:\n"
        "- name: web\n"
        "  replica: 0\n"
        "  state: ready\n"
        '  message: "a: b"\n'
        "- name: db\n"
        "verified: false\n"
    )
