"""Containers' usage from cgroup files, in the v2 and v1 layouts of the cgroupfs and systemd drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.runtime.cgroups import ContainerUsage, read_usage
from gitops.status import BadRecord, parse_record


def test_v2_and_v1_layouts_are_read_and_unknown_containers_left_out(tmp_path: Path) -> None:
    v2 = tmp_path / "system.slice" / "docker-aaa.scope"
    v2.mkdir(parents=True)
    (v2 / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (v2 / "memory.current").write_text("10000\n")
    (v2 / "memory.stat").write_text("anon 6000\ninactive_file 4000\n")
    cpu, memory = tmp_path / "cpuacct" / "docker" / "bbb", tmp_path / "memory" / "docker" / "bbb"
    cpu.mkdir(parents=True)
    memory.mkdir(parents=True)
    (cpu / "cpuacct.usage").write_text("2000000\n")
    (memory / "memory.usage_in_bytes").write_text("9000\n")
    (memory / "memory.stat").write_text("cache 100\ntotal_inactive_file 1000\n")
    assert read_usage(["aaa", "bbb", "gone"], tmp_path) == {
        "aaa": ContainerUsage(cpu_ns=1_500_000, memory_bytes=6000),
        "bbb": ContainerUsage(cpu_ns=2_000_000, memory_bytes=8000),
    }


def test_autoscaling_sections_of_peer_records_are_bounded() -> None:
    base = b"node: n1\nheartbeat: '2026-12-01T12:00:00Z'\nautoscaling:\n"
    row = b"  decisions: [{namespace: d, name: w, target: Deployment/w, decider: n1, time: '2026-12-01T12:00:00Z', "
    assert parse_record(base + row + b"replicas: 3}]\n", "n1").autoscaling is not None
    with pytest.raises(BadRecord, match="replicas"):
        parse_record(base + row + b"replicas: -1}]\n", "n1")
    with pytest.raises(BadRecord, match="time"):
        parse_record(base + row.replace(b"'2026-12-01T12:00:00Z'", b"soon") + b"replicas: 3}]\n", "n1")
    with pytest.raises(BadRecord, match="cpu"):
        parse_record(
            base + b"  usage: [{namespace: d, kind: Deployment, name: w, pods: 1, cpu: '1', memory: 0}]\n", "n1"
        )
