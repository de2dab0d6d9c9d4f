"""GPU inventory (NVML or declared) and deterministic assignment of GPU UUIDs to replicas."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gitops.identity import ReplicaId

log = logging.getLogger(__name__)


_MIB = 1024 * 1024


@dataclass(frozen=True)
class Gpu:
    """One physical GPU as the node sees it."""

    uuid: str
    model: str
    memory_mib: int
    index: int


class GpuInventory(Protocol):
    """Anything that can list this node's GPUs and read how busy they are."""

    def gpus(self) -> list[Gpu]:
        """The GPUs present now, in index order."""
        ...

    def utilization(self, uuids: Sequence[str]) -> dict[str, int]:
        """Percent of the last sample period each GPU was busy (NVML utilization.gpu); unreadable ones left out."""
        ...


class DeclaredInventory:
    """GPUs given explicitly: by node-local config, or by tests (which set ``busy``, percent by UUID)."""

    def __init__(self, gpus: Sequence[Gpu] = (), busy: Mapping[str, int] | None = None) -> None:
        self._gpus = sorted(gpus, key=lambda g: (g.index, g.uuid))
        # Declared GPUs have no driver to ask: only what is set here is known.
        self.busy = dict(busy or {})

    def gpus(self) -> list[Gpu]:
        """The declared GPUs, in index order."""
        return list(self._gpus)

    def utilization(self, uuids: Sequence[str]) -> dict[str, int]:
        """The utilization set in ``busy`` for each of ``uuids`` that has one."""
        return {u: self.busy[u] for u in uuids if u in self.busy}


def _text(value: bytes | str) -> str:
    # Older nvidia-ml-py releases return bytes, newer ones str.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class NvmlInventory:
    """GPUs as reported by the NVIDIA driver through NVML; no driver means no GPUs."""

    def __init__(self) -> None:
        self.error: str | None = None
        # NVML stays initialised between utilization reads: nvmlInit can take seconds without persistence mode.
        self._initialised = False

    def gpus(self) -> list[Gpu]:
        """Query NVML once; any NVML failure yields zero GPUs and sets ``error``."""
        self.error = None
        try:
            import pynvml
        except ImportError as exc:
            self.error = f"nvidia-ml-py not installed: {exc}"
            return []
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            # The usual case on machines without an NVIDIA driver: not an error for the daemon.
            self.error = f"NVML unavailable: {exc}"
            log.debug("no GPUs: %s", self.error)
            return []
        try:
            found: list[Gpu] = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                found.append(
                    Gpu(
                        uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                        model=_text(pynvml.nvmlDeviceGetName(handle)),
                        memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // _MIB,
                        index=i,
                    )
                )
            return found
        except pynvml.NVMLError as exc:
            # A half-read inventory would advertise GPUs that may not work; report none.
            self.error = f"NVML query failed: {exc}"
            log.warning("ignoring GPUs: %s", self.error)
            return []
        finally:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                log.debug("nvmlShutdown failed: %s", exc)

    def utilization(self, uuids: Sequence[str]) -> dict[str, int]:
        """One NVML read per GPU; a GPU NVML cannot read is left out (its replicas go unsampled this pass)."""
        try:
            import pynvml
        except ImportError:
            return {}
        found: dict[str, int] = {}
        try:
            if not self._initialised:
                pynvml.nvmlInit()
                self._initialised = True
            for uuid in uuids:
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
                    found[uuid] = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except pynvml.NVMLError as exc:
                    log.debug("no utilization for GPU %s: %s", uuid, exc)
        except pynvml.NVMLError as exc:
            log.warning("NVML unavailable, GPU utilization not sampled: %s", exc)
        return found


def assign_gpus(
    gpus: Sequence[Gpu],
    demands: Sequence[tuple[ReplicaId, int]],
    current: Mapping[ReplicaId, tuple[str, ...]] | None = None,
) -> dict[ReplicaId, tuple[str, ...]]:
    """Give each replica its GPU UUIDs: keep valid current ones, else lowest free UUIDs; omit misfits."""
    wanted: dict[ReplicaId, int] = {}
    for replica, count in demands:
        if replica in wanted:
            raise ValueError(f"duplicate GPU demand for replica {replica}")
        if count < 0:
            raise ValueError(f"negative GPU demand for replica {replica}")
        wanted[replica] = count
    present = {g.uuid for g in gpus}
    taken: set[str] = set()
    result: dict[ReplicaId, tuple[str, ...]] = {}
    # Keeping running containers on their GPUs comes first, in replica order so that two
    # replicas claiming one UUID (a stale view) resolve the same way on every pass.
    for replica in sorted(wanted):
        held = (current or {}).get(replica)
        if held is None or len(held) != wanted[replica] or len(set(held)) != len(held):
            continue
        if all(u in present and u not in taken for u in held):
            result[replica] = tuple(sorted(held))
            taken.update(held)
    free = sorted(present - taken)
    for replica in sorted(wanted):
        if replica in result:
            continue
        count = wanted[replica]
        if count <= len(free):
            result[replica], free = tuple(free[:count]), free[count:]
    return result


def inventory_report() -> str:
    """Human-readable summary of what NVML sees on this machine."""
    inventory = NvmlInventory()
    found = inventory.gpus()
    if not found:
        return f"NVML: no GPUs ({inventory.error or 'driver reports none'})"
    lines = [f"NVML: {len(found)} GPU(s)"]
    lines += [f"  {g.index}: {g.uuid} {g.model} {g.memory_mib} MiB" for g in found]
    return "\n".join(lines)


if __name__ == "__main__":
    print(inventory_report())
