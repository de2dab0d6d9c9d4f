"""Node taints: read from config, published in status, read back from peers' records as untrusted input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitops.cluster import ClusterView
from gitops.config import ConfigError, load_config
from gitops.gpu import DeclaredInventory
from gitops.nodefacts import node_info
from gitops.reconcile.report import NodeFacts, render
from gitops.scheduling import HOSTNAME_LABEL, Taint
from gitops.status import BadRecord, RevisionStatus, dump, parse_record, taints_of

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_config_reads_taints_from_file_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("taints:\n- {key: dedicated, value: gpu, effect: NoSchedule}\n- {key: drain, effect: NoExecute}\n")
    cfg = load_config(f, {}, {})
    assert cfg.taints == (
        Taint(key="dedicated", value="gpu", effect="NoSchedule"),
        Taint(key="drain", effect="NoExecute"),
    )
    env = load_config(f, {}, {"GITOPS_TAINTS": '[{"key": "k", "effect": "PreferNoSchedule"}]'})
    assert env.taints == (Taint(key="k", effect="PreferNoSchedule"),)
    f.write_text("taints: [{key: k, effect: NoRun}]\n")
    with pytest.raises(ConfigError, match="NoRun"):
        load_config(f, {}, {})


def test_taints_round_trip_through_the_status_record_and_the_cluster_view() -> None:
    taints = (
        Taint(key="dedicated", value="gpu", effect="NoSchedule"),
        Taint(key="drain", effect="NoExecute", time_added=T0),
    )
    info = node_info("n1", {}, DeclaredInventory([]), cpu_override=1000, memory_override_mib=1024, taints=taints)
    assert info.labels[HOSTNAME_LABEL] == "n1"
    record = render(NodeFacts("n1", info, []), RevisionStatus(), "", ["n1"], [], [], "2026-12-01T12:00:00Z")
    raw = dump(record)
    assert b'timeAdded: "2026-12-01T12:00:00Z"' in raw
    back = parse_record(raw, "n1")
    assert taints_of(back) == taints
    view = ClusterView(reports={"n1": back}, live=frozenset({"n1"}))
    assert view.node_infos(frozenset())[0].taints == taints


@pytest.mark.parametrize(
    ("taint", "why"),
    [
        ("{key: '', effect: NoSchedule}", "taints[0].key"),
        ("{key: k, value: '" + "v" * 64 + "', effect: NoSchedule}", "taints[0].value"),
        ("{key: k, effect: NoSchedule, timeAdded: yesterday}", "taints[0].timeAdded"),
        ("{key: k}", "taints[0].effect"),
        (", ".join(["{key: k, effect: NoSchedule}"] * 65), "taints"),
    ],
)
def test_a_peer_record_with_a_bad_taint_is_rejected(taint: str, why: str) -> None:
    with pytest.raises(BadRecord, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_record(f"node: n1\ntaints: [{taint}]\n".encode(), "n1")


def test_an_effect_from_a_newer_daemon_is_left_out() -> None:
    record = parse_record(b"node: n1\ntaints: [{key: a, effect: NoLunch}, {key: b, effect: NoSchedule}]\n", "n1")
    assert taints_of(record) == (Taint(key="b", effect="NoSchedule"),)
