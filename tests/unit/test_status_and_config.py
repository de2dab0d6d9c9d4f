"""The status record round-trips; config merges file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.config import ConfigError, load_config
from gitops.status import BadRecord, NodeStatus, ReplicaStatus, commit_message, content_key, dump, parse_record


def test_status_round_trip_and_message() -> None:
    st = NodeStatus(
        node="node-1",
        heartbeat="2026-11-27T18:00:00Z",
        workloads=[
            ReplicaStatus(
                namespace="default",
                kind="Deployment",
                name="web",
                replica=i,
                spec_hash="ab" * 32,
                state="ready",
            )
            for i in range(2)
        ],
    )
    st.revision.sha = "abc1234def"
    raw = dump(st)
    assert b"specHash" in raw and b"daemonVersion" in raw
    back = parse_record(raw, "node-1")
    assert back == st and back.workloads[1].replica == 1
    assert commit_message(st) == "node-1: web 2/2 ready at abc1234"
    assert content_key(st) == content_key(st.model_copy(update={"heartbeat": "2030-01-01T00:00:00Z"}))
    with pytest.raises(BadRecord, match="not UTF-8"):
        parse_record(b"\x00\xff junk", "x")
    assert parse_record(b"node: x\nfutureField: 1\n", "x").node == "x"


def test_config_priority(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("repo: /from/file\nnode: file-node\ninterval: 5\nlabels: {zone: a}\n")
    cfg = load_config(f, {"node": "flag-node"}, {"GITOPS_INTERVAL": "7", "GITOPS_REPO": "/from/env"})
    assert (cfg.repo, cfg.node, cfg.interval, cfg.labels) == ("/from/env", "flag-node", 7.0, {"zone": "a"})
    f.write_text("repoo: x\n")
    with pytest.raises(ConfigError, match="repoo"):
        load_config(f, {}, {})


def test_metrics_port_is_refused_until_metrics_exist(tmp_path: Path) -> None:
    # It used to be accepted and ignored, which let an operator believe metrics were served.
    f = tmp_path / "config.yaml"
    f.write_text("metrics_port: 9100\n")
    with pytest.raises(ConfigError, match="metrics_port"):
        load_config(f, {}, {})
