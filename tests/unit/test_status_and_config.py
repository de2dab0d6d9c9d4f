"""The status record round-trips; config merges file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.admission import Policy
from gitops.config import ConfigError, load_config
from gitops.status import (
    BadRecord,
    NodeStatus,
    PolicyStatus,
    ReplicaStatus,
    commit_message,
    content_key,
    dump,
    parse_record,
)


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


def test_policy_from_config_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(
        "policy:\n  default: restricted\n  namespaces: {monitoring: privileged}\n  host_paths: [/srv/../var/log]\n"
    )
    cfg = load_config(f, {}, {})
    assert cfg.policy.level_for("monitoring") == "privileged" and cfg.policy.level_for("x") == "restricted"
    assert cfg.policy.host_paths == ("/var/log",)
    assert load_config(None, {}, {"GITOPS_CONFIG": str(tmp_path / "no.yaml")}).policy.default == "baseline"
    env = {"GITOPS_CONFIG": str(tmp_path / "no.yaml"), "GITOPS_POLICY": "{default: privileged}"}
    assert load_config(None, {}, env).policy.default == "privileged"
    f.write_text("policy: {default: open}\n")
    with pytest.raises(ConfigError, match="default"):
        load_config(f, {}, {})


def test_a_peers_published_policy_is_read_as_untrusted_input() -> None:
    st = NodeStatus(node="n", policy=PolicyStatus(namespaces={"mon": "privileged"}, host_paths=("/srv",)))
    raw = dump(st)
    assert b"hostPaths:\n  - /srv" in raw and b"mon: privileged" in raw
    back = parse_record(raw, "n")
    assert back.policy is not None and back.policy.level_for("mon") == "privileged"
    assert isinstance(back.policy, Policy) and back.policy.host_paths == ("/srv",)
    # Fields from a newer daemon are tolerated; a bad or oversized policy rejects the record alone.
    assert parse_record(b"node: n\npolicy: {default: baseline, futureRule: 1}\n", "n").policy == PolicyStatus()
    with pytest.raises(BadRecord, match=r"policy\.default"):
        parse_record(b"node: n\npolicy: {default: lax}\n", "n")
    many = "\n".join(f"  - /p{i}" for i in range(300))
    with pytest.raises(BadRecord, match=r"policy\.hostPaths"):
        parse_record(f"node: n\npolicy:\n hostPaths:\n{many}\n".encode(), "n")
    assert parse_record(b"node: n\n", "n").policy is None


def test_the_node_address_comes_from_config_flag_or_its_old_name_and_peers_bad_ones_are_contained(
    tmp_path: Path,
) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("host_ip: 192.0.2.7\n")
    assert load_config(f, {}, {}).address == "192.0.2.7"
    assert load_config(f, {"address": "192.0.2.8"}, {}).address == "192.0.2.8"
    with pytest.raises(ConfigError, match="address"):
        load_config(f, {"address": "node-1.example"}, {})
    assert parse_record(b"node: x\naddress: 10.0.0.5\n", "x").address == "10.0.0.5"
    # A peer's unusable address costs it its Service endpoints, not its place in the cluster.
    for bad in ("0.0.0.0", "224.0.0.1", "banana", "010.0.0.5"):
        assert parse_record(f"node: x\naddress: '{bad}'\n".encode(), "x").address == ""
