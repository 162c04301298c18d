"""The one place that talks to NVML. Everything else sees `GpuSource`, so tests can swap in a fake here.

Indices follow NVML, which enumerates by PCI bus id; the worker sets CUDA_DEVICE_ORDER=PCI_BUS_ID so that
CUDA_VISIBLE_DEVICES means the same GPUs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None = None
    kind: str = "compute"  # or "graphics" (a display server, say)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total: int
    memory_used: int
    utilization: int | None = None
    processes: tuple[GpuProcess, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class GpuSource(Protocol):
    def devices(self) -> list[GpuInfo]:
        """The GPUs, or [] when there are none; raises GpuUnavailable with the reason NVML gave."""
        ...


class GpuUnavailable(RuntimeError):
    pass


class NvmlSource:
    """NVML through nvidia-ml-py (`pynvml`). Every NVML failure becomes GpuUnavailable, the one error callers
    handle: a worker refreshing its pool or `flf2v gpus` must say what went wrong, not crash."""

    def __init__(self) -> None:
        self._ready = False

    def _init(self) -> Any:
        try:
            import pynvml
        except ImportError as exc:  # the package is a dependency, but a broken install must still be said plainly
            raise GpuUnavailable(f"NVML is not available: cannot import pynvml ({exc})") from None
        if not self._ready:
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                raise GpuUnavailable(f"NVML is not available ({exc}): no NVIDIA driver on this machine") from None
            self._ready = True
        return pynvml

    def devices(self) -> list[GpuInfo]:
        nvml = self._init()
        try:
            return [self._device(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]
        except nvml.NVMLError as exc:  # a GPU fallen off the bus, a driver reloaded under us
            raise GpuUnavailable(f"NVML failed ({exc})") from None

    @staticmethod
    def _device(nvml: Any, index: int) -> GpuInfo:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilization: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:  # some boards (and MIG instances) do not report it; the panel shows no figure
            utilization = None
        procs: dict[int, GpuProcess] = {}
        # Compute last, so a process with both contexts counts as compute: that is what blocks a GPU in the pool.
        for kind, getter in (
            ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses),
            ("compute", nvml.nvmlDeviceGetComputeRunningProcesses),
        ):
            try:
                for p in getter(handle):
                    used = p.usedGpuMemory if isinstance(p.usedGpuMemory, int) else None
                    procs[int(p.pid)] = GpuProcess(int(p.pid), used, kind)
            except nvml.NVMLError:
                pass
        name = nvml.nvmlDeviceGetName(handle)
        uuid = nvml.nvmlDeviceGetUUID(handle)
        return GpuInfo(
            index=index,
            # Older nvidia-ml-py releases return bytes, newer ones str.
            name=name.decode() if isinstance(name, bytes) else str(name),
            uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
            memory_total=int(memory.total),
            memory_used=int(memory.used),
            utilization=utilization,
            processes=tuple(procs.values()),
        )


class FakeSource:
    """GPUs described in a JSON file (a list of GpuInfo fields), re-read on every call so a test can
    change what the 'hardware' shows while a worker runs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def devices(self) -> list[GpuInfo]:
        items = json.loads(self.path.read_text())
        return [
            GpuInfo(**{**item, "processes": tuple(GpuProcess(**p) for p in item.get("processes", []))})
            for item in items
        ]


def default_source() -> GpuSource:
    """NVML, unless FLF2V_FAKE_GPUS names a JSON file of fake GPUs (for tests and demos of the GPU views)."""
    fake = os.environ.get("FLF2V_FAKE_GPUS")
    return FakeSource(fake) if fake else NvmlSource()
