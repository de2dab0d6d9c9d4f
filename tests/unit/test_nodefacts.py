"""Node facts: capacity, reserve, overrides and automatic labels."""

from __future__ import annotations

import os
from pathlib import Path

from gitops.gpu import DeclaredInventory, Gpu
from gitops.nodefacts import host_memory_mib, node_info, normalise_arch


def test_host_capacity_minus_reserve() -> None:
    info = node_info("n1", {"zone": "a"}, DeclaredInventory(), reserve_cpu_millis=250, reserve_memory_mib=512)
    assert info.cpu_millis == (os.cpu_count() or 1) * 1000 - 250
    assert info.memory_mib == host_memory_mib() - 512
    assert info.labels["zone"] == "a"
    assert info.labels["gitops.gpu.count"] == "0"
    assert "gitops.gpu.model" not in info.labels


def test_overrides_labels_and_gpus() -> None:
    g = [Gpu("GPU-b", "NVIDIA H100 80GB HBM3", 81559, 1), Gpu("GPU-a", "NVIDIA H100 80GB HBM3", 81559, 0)]
    info = node_info(
        "n1",
        {"gitops.gpu.count": "8", "role": "train"},
        DeclaredInventory(g),
        cpu_override=16000,
        memory_override_mib=65536,
        reserve_cpu_millis=1000,
        reserve_memory_mib=1024,
        hostname="host-1",
        machine="aarch64",
    )
    assert (info.cpu_millis, info.memory_mib, info.gpus) == (15000, 64512, ("GPU-a", "GPU-b"))
    assert info.labels == {
        "kubernetes.io/hostname": "n1",  # the node's name, unless configured
        "role": "train",
        "gitops.hostname": "host-1",
        "gitops.arch": "arm64",
        "gitops.gpu.count": "2",  # measured facts win over configured labels
        "gitops.gpu.model": "NVIDIA-H100-80GB-HBM3",
    }


def test_gpu_list_accepted_and_reserve_never_negative() -> None:
    info = node_info("n", {}, [Gpu("GPU-0", "T4", 15360, 0)], cpu_override=100, memory_override_mib=0)
    assert (info.cpu_millis, info.memory_mib, info.gpus) == (0, 0, ("GPU-0",))


def test_meminfo_parsing(tmp_path: Path) -> None:
    p = tmp_path / "meminfo"
    p.write_text("MemTotal:       16318452 kB\nMemFree:         1234 kB\n")
    assert host_memory_mib(p) == 16318452 // 1024
    assert host_memory_mib(tmp_path / "missing") == 0


def test_arch_names() -> None:
    assert [normalise_arch(m) for m in ("x86_64", "AMD64", "aarch64", "arm64", "armv7l", "mips")] == [
        "amd64",
        "amd64",
        "arm64",
        "arm64",
        "arm",
        "mips",
    ]
