"""What this node tells placement about itself: capacity and labels, from the host or config."""

from __future__ import annotations

import os
import platform
import re
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from gitops.gpu import Gpu, GpuInventory
from gitops.placement import NodeInfo
from gitops.scheduling import HOSTNAME_LABEL, Taint

# Left to the OS, the Docker engine and the daemon itself (Kubernetes' system-reserved
# defaults are of the same order).
DEFAULT_RESERVE_CPU_MILLIS = 100
DEFAULT_RESERVE_MEMORY_MIB = 256

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_ip() -> str:
    """The address this host reaches other hosts from: the default route's source (127.0.0.1 without one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            # UDP connect sends nothing; it only picks the route and so the source address.
            s.connect(("192.0.2.1", 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def host_cpu_millis() -> int:
    """Millicores of this host: one core is 1000."""
    return (os.cpu_count() or 1) * 1000


def host_memory_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal of this host in MiB, or 0 where /proc/meminfo cannot tell."""
    try:
        text = meminfo.read_text()
    except OSError:
        return 0
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else 0


def normalise_arch(machine: str) -> str:
    """Go/OCI architecture name (amd64, arm64, ...) for a ``platform.machine()`` value."""
    lowered = machine.lower()
    return _ARCH_ALIASES.get(lowered, lowered)


def _label_value(text: str) -> str:
    # Kubernetes label values allow [A-Za-z0-9_.-]; "NVIDIA H100 80GB HBM3" becomes
    # "NVIDIA-H100-80GB-HBM3", as NVIDIA's GPU feature discovery labels it.
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-_.")[:63]


def automatic_labels(hostname: str, machine: str, gpus: list[Gpu]) -> dict[str, str]:
    """The ``gitops.*`` labels every node carries."""
    labels = {
        "gitops.hostname": hostname,
        "gitops.arch": normalise_arch(machine),
        "gitops.gpu.count": str(len(gpus)),
    }
    if gpus:
        # Mixed-model hosts are rare; the most common model (ties by name) is the useful one.
        counts = Counter(g.model for g in gpus)
        model = min(counts, key=lambda m: (-counts[m], m))
        labels["gitops.gpu.model"] = _label_value(model)
    return labels


def node_info(
    name: str,
    labels: Mapping[str, str],
    gpu_inventory: GpuInventory | Sequence[Gpu],
    cpu_override: int | None = None,
    memory_override_mib: int | None = None,
    reserve_cpu_millis: int = DEFAULT_RESERVE_CPU_MILLIS,
    reserve_memory_mib: int = DEFAULT_RESERVE_MEMORY_MIB,
    cordoned: bool = False,
    hostname: str | None = None,
    machine: str | None = None,
    taints: tuple[Taint, ...] = (),
) -> NodeInfo:
    """This node as placement sees it: allocatable capacity (minus reserve), labels, GPU UUIDs."""
    # A list is accepted so a caller that already queried NVML does not query it twice.
    gpus = list(gpu_inventory) if isinstance(gpu_inventory, Sequence) else gpu_inventory.gpus()
    cpu = host_cpu_millis() if cpu_override is None else cpu_override
    memory = host_memory_mib() if memory_override_mib is None else memory_override_mib
    # Automatic labels win over configured ones so a node cannot advertise GPUs or an
    # architecture it lacks.
    merged = {HOSTNAME_LABEL: name, **labels}
    merged.update(automatic_labels(hostname or platform.node(), machine or platform.machine(), gpus))
    return NodeInfo(
        name=name,
        labels=merged,
        cpu_millis=max(0, cpu - reserve_cpu_millis),
        memory_mib=max(0, memory - reserve_memory_mib),
        gpus=tuple(g.uuid for g in sorted(gpus, key=lambda g: (g.index, g.uuid))),
        cordoned=cordoned,
        taints=taints,
    )
