"""One rank's memory figures for the `memory` events, with peaks that start again at each stage.

CUDA: the caching allocator's allocated, reserved and peak bytes; beside them what NVML sees the process hold
on its GPU (`nvml_used`: the allocator's reserve plus the CUDA context, cuBLAS workspaces and NCCL buffers,
which the allocator never sees) and the host's resident set size (`host_rss`). CPU: the resident set size and
its peak. Both kinds of peak are reset when a stage begins (CUDA: `reset_peak_memory_stats`; Linux: writing 5
to /proc/self/clear_refs, which resets VmHWM), so a stage's end event reports that stage's own peak rather
than the run's so far.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path
from typing import Any

import psutil
import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak(device: torch.device) -> None:
    """Start this rank's peak figure again from now (where the platform can; else it keeps counting)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def peak_rss_bytes() -> int:
    """The peak resident set size since the last reset (VmHWM), or since the start where /proc has none."""
    with contextlib.suppress(OSError, ValueError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    # ru_maxrss is in kilobytes on Linux and cannot be reset.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class NvmlProcessMemory:
    """The bytes NVML sees this process use on one GPU; None where NVML (nvidia-ml-py) is missing or fails."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._handle: Any = None
        self._failed = False

    def _nvml_handle(self) -> Any:
        import pynvml

        if self._handle is None:
            pynvml.nvmlInit()
            # By UUID, which CUDA_VISIBLE_DEVICES does not renumber.
            uuid = str(torch.cuda.get_device_properties(self.device).uuid)
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        return self._handle

    def used_bytes(self) -> int | None:
        if self._failed:
            return None
        try:
            import pynvml

            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(self._nvml_handle()):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
            return None  # not listed (in a container NVML may not see this process's pid)
        except Exception:  # no NVML, no driver, an unsupported query: the figure is optional
            self._failed = True
            return None


def memory_figures(device: torch.device, nvml: NvmlProcessMemory | None = None) -> dict[str, int]:
    """This rank's figures for a `memory` event (engine.telemetry lists the fields)."""
    rss = int(psutil.Process().memory_info().rss)
    if device.type == "cuda":
        figures = {
            "allocated": int(torch.cuda.memory_allocated(device)),
            "reserved": int(torch.cuda.memory_reserved(device)),
            "peak": int(torch.cuda.max_memory_allocated(device)),
            # The host side too (not `rss`, which readers take for a CPU run's figure): a rank must not hold
            # whole models in host RAM when it has a GPU.
            "host_rss": rss,
        }
        used = nvml.used_bytes() if nvml is not None else None
        if used is not None:
            figures["nvml_used"] = used
        return figures
    # VmHWM is updated lazily by the kernel, so it can trail the current figure for a moment.
    return {"rss": rss, "peak_rss": max(rss, peak_rss_bytes())}
