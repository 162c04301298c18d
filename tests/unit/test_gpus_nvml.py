"""NvmlSource against a fake `pynvml` module: NVML is swapped at its boundary only, so every line of our own
code that reads it runs (the TUI's tests replace the whole source)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace
from typing import Any

import pytest

from flf2v_tui.gpus import GpuInfo, GpuProcess, GpuUnavailable, NvmlSource

GIB = 1 << 30


class NVMLError(Exception):
    pass


def fake_pynvml(*, init_fails: bool = False, count_fails: bool = False) -> types.ModuleType:
    """Two GPUs as NVML shows them: the second reports no utilisation, names and uuids come as bytes (older
    nvidia-ml-py) on the first and as str on the second."""
    nvml: Any = types.ModuleType("pynvml")
    nvml.NVMLError = NVMLError
    nvml.calls = []

    def init() -> None:
        nvml.calls.append("init")
        if init_fails:
            raise NVMLError("Driver Not Loaded")

    def count() -> int:
        if count_fails:
            raise NVMLError("GPU is lost")
        return 2

    def utilization(handle: str) -> SimpleNamespace:
        if handle == "h1":
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=97, memory=40)

    def graphics(handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=100, usedGpuMemory=GIB)] if handle == "h0" else []

    def compute(handle: str) -> list[SimpleNamespace]:
        if handle == "h1":
            raise NVMLError("Not Supported")
        # NVML gives None for a process whose memory it cannot see (another container, say).
        return [SimpleNamespace(pid=200, usedGpuMemory=60 * GIB), SimpleNamespace(pid=201, usedGpuMemory=None)]

    nvml.nvmlInit = init
    nvml.nvmlDeviceGetCount = count
    nvml.nvmlDeviceGetHandleByIndex = lambda index: f"h{index}"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(
        total=80 * GIB, used=(61 if h == "h0" else 2) * GIB, free=0
    )
    nvml.nvmlDeviceGetUtilizationRates = utilization
    nvml.nvmlDeviceGetGraphicsRunningProcesses = graphics
    nvml.nvmlDeviceGetComputeRunningProcesses = compute
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3" if h == "h0" else "NVIDIA A100-SXM4-40GB"
    nvml.nvmlDeviceGetUUID = lambda h: b"GPU-aaaa" if h == "h0" else "GPU-bbbb"
    return nvml


def test_devices_reads_memory_utilisation_processes_and_names(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    source = NvmlSource()
    first, second = source.devices()
    assert first == GpuInfo(
        index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-aaaa", memory_total=80 * GIB, memory_used=61 * GIB,
        utilization=97, processes=(GpuProcess(100, GIB, "graphics"), GpuProcess(200, 60 * GIB, "compute"),
                                   GpuProcess(201, None, "compute")),
    )  # fmt: skip
    # A board that reports no utilisation gives None (the panel draws no figure), not an error or a 0 %.
    assert second == GpuInfo(1, "NVIDIA A100-SXM4-40GB", "GPU-bbbb", 80 * GIB, 2 * GIB, None, ())
    source.devices()
    assert nvml.calls == ["init"]  # initialised once per source


def test_nvml_init_failing_is_gpu_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_fails=True))
    with pytest.raises(GpuUnavailable, match="Driver Not Loaded"):
        NvmlSource().devices()


def test_nvml_failing_later_is_gpu_unavailable_too(monkeypatch):
    # Callers (the worker's pool, `flf2v gpus`, doctor) handle GpuUnavailable only; a raw NVMLError would crash them.
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count_fails=True))
    with pytest.raises(GpuUnavailable, match="GPU is lost"):
        NvmlSource().devices()


def test_pynvml_missing_is_gpu_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # how Python marks a module that cannot be imported
    with pytest.raises(GpuUnavailable, match="pynvml"):
        NvmlSource().devices()
