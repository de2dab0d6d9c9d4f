"""GPU inventory adapters and deterministic UUID assignment."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from gitops.gpu import DeclaredInventory, Gpu, NvmlInventory, assign_gpus, inventory_report


def gpus(n: int) -> list[Gpu]:
    return [Gpu(uuid=f"GPU-{i}", model="NVIDIA H100", memory_mib=81559, index=i) for i in range(n)]


class _FakeNvml(types.ModuleType):
    """Just enough of pynvml to drive NvmlInventory."""

    class NVMLError(Exception):
        pass

    def __init__(self, count: int = 2, fail_init: bool = False, fail_at: int | None = None) -> None:
        super().__init__("pynvml")
        self.count, self.fail_init, self.fail_at = count, fail_init, fail_at
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i == self.fail_at:
            raise self.NVMLError("GPU is lost")
        return i

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return f"GPU-{h}".encode()  # old bindings return bytes

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return types.SimpleNamespace(total=80 * 1024**3)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        self.calls.append(f"handle {uuid}")
        if uuid == "GPU-lost":
            raise self.NVMLError("GPU is lost")
        return int(uuid.removeprefix("GPU-"))

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return types.SimpleNamespace(gpu=40 + h, memory=10)


def test_nvml_reads_devices_and_shuts_down(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    found = NvmlInventory().gpus()
    assert found == [Gpu("GPU-0", "NVIDIA H100 80GB HBM3", 81920, 0), Gpu("GPU-1", "NVIDIA H100 80GB HBM3", 81920, 1)]
    assert fake.calls == ["init", "shutdown"]


def test_nvml_without_driver_is_zero_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(fail_init=True))
    inv = NvmlInventory()
    assert inv.gpus() == []
    assert inv.error is not None and "Driver Not Loaded" in inv.error


def test_nvml_failure_mid_query_reports_none_and_shuts_down(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNvml(count=3, fail_at=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert NvmlInventory().gpus() == []
    assert fake.calls == ["init", "shutdown"]


def test_nvml_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes the import raise ImportError
    inv = NvmlInventory()
    assert inv.gpus() == []
    assert inv.error is not None and "not installed" in inv.error


def test_nvml_utilization_reads_each_gpu_by_uuid_and_leaves_out_what_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a real-GPU test: pynvml is replaced by the fake above, to drive the adapter's own code path.
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    inv = NvmlInventory()
    assert inv.utilization(["GPU-0", "GPU-lost", "GPU-1"]) == {"GPU-0": 40, "GPU-1": 41}
    assert inv.utilization(["GPU-1"]) == {"GPU-1": 41}
    # NVML is initialised once and kept for the next pass.
    assert fake.calls == ["init", "handle GPU-0", "handle GPU-lost", "handle GPU-1", "handle GPU-1"]
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(fail_init=True))
    assert NvmlInventory().utilization(["GPU-0"]) == {}
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert NvmlInventory().utilization(["GPU-0"]) == {}


def test_declared_gpus_report_only_the_utilization_set_for_them() -> None:
    inv = DeclaredInventory(gpus(2), busy={"GPU-0": 75})
    assert inv.utilization(["GPU-0", "GPU-1"]) == {"GPU-0": 75}


def test_real_nvml_never_crashes() -> None:
    report = inventory_report()
    assert report.startswith("NVML: ")


def test_declared_inventory_sorted_by_index() -> None:
    g = gpus(3)
    assert DeclaredInventory([g[2], g[0], g[1]]).gpus() == g


def test_assign_lowest_free_in_replica_order() -> None:
    out = assign_gpus(gpus(4), [(("w", 1), 1), (("w", 0), 2), (("v", 0), 0)])
    assert out == {("v", 0): (), ("w", 0): ("GPU-0", "GPU-1"), ("w", 1): ("GPU-2",)}


def test_assign_keeps_valid_current_and_never_shares() -> None:
    current = {("w", 0): ("GPU-3",), ("w", 1): ("GPU-3",), ("w", 2): ("GPU-9",)}
    out = assign_gpus(gpus(4), [(("w", 0), 1), (("w", 1), 1), (("w", 2), 1)], current)
    assert out == {("w", 0): ("GPU-3",), ("w", 1): ("GPU-0",), ("w", 2): ("GPU-1",)}


def test_assign_drops_current_of_wrong_size_and_omits_misfits() -> None:
    current = {("a", 0): ("GPU-0",)}
    out = assign_gpus(gpus(2), [(("a", 0), 2), (("b", 0), 1)], current)
    assert out == {("a", 0): ("GPU-0", "GPU-1")}


def test_assign_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        assign_gpus(gpus(1), [(("a", 0), 1), (("a", 0), 1)])
