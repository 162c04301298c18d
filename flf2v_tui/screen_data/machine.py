"""The GPU panel's data: each GPU's memory and utilisation with a short history, and which job holds it; CPU and
RAM instead on a machine without an NVIDIA GPU. GPUs come from a gpus.GpuSource, so tests swap NVML out there."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import psutil

from flf2v_tui.gpus import GpuSource, GpuUnavailable

HISTORY = 60  # samples per sparkline: a minute at the panel's one sample a second


@dataclass(frozen=True)
class GpuRow:
    index: int
    name: str
    memory_used: int
    memory_total: int
    utilization: int | None
    job: int | str | None  # the flf2v job holding it, or an idle warm group (its description)
    other_pids: tuple[int, ...]  # processes of other programs on it
    util_history: tuple[float, ...]
    memory_history: tuple[float, ...]


@dataclass(frozen=True)
class MachineSample:
    gpus: list[GpuRow]
    no_gpu_reason: str  # empty when there are GPUs
    cpu_percent: float
    ram_used: int
    ram_total: int
    cpu_history: tuple[float, ...] = field(default_factory=tuple)
    ram_history: tuple[float, ...] = field(default_factory=tuple)


class MachineMonitor:
    def __init__(self, source: GpuSource, history: int = HISTORY) -> None:
        self.source = source
        self.history = history
        self._util: dict[int, deque[float]] = {}
        self._memory: dict[int, deque[float]] = {}
        self._cpu: deque[float] = deque(maxlen=history)
        self._ram: deque[float] = deque(maxlen=history)
        # One sample at a time: the panel's sampling thread is replaced on every tick but runs to its end,
        # and copying a history while another thread appends to it raises.
        self._sampling = threading.Lock()
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; start the clock now

    def _track(self, store: dict[int, deque[float]], index: int, value: float) -> tuple[float, ...]:
        series = store.setdefault(index, deque(maxlen=self.history))
        series.append(value)
        return tuple(series)

    def sample(self, holders: dict[int, int | str]) -> MachineSample:
        """One reading; `holders` maps GPU index -> job id (storage.workers.gpu_holders)."""
        with self._sampling:
            return self._sample(holders)

    def _sample(self, holders: dict[int, int | str]) -> MachineSample:
        try:
            devices = self.source.devices()
            reason = "" if devices else "NVML works but sees no GPU"
        except GpuUnavailable as exc:
            devices, reason = [], str(exc)
        except Exception as exc:  # anything else a source raises (a broken fake-GPU file, a bug): said, not fatal
            devices, reason = [], f"NVML failed ({type(exc).__name__}: {exc})"
        rows = []
        for d in devices:
            util = float(d.utilization or 0)
            share = 100.0 * d.memory_used / d.memory_total if d.memory_total else 0.0
            job = holders.get(d.index)
            rows.append(
                GpuRow(
                    index=d.index,
                    name=d.name,
                    memory_used=d.memory_used,
                    memory_total=d.memory_total,
                    utilization=d.utilization,
                    job=job,
                    other_pids=() if job is not None else tuple(p.pid for p in d.processes),
                    util_history=self._track(self._util, d.index, util),
                    memory_history=self._track(self._memory, d.index, share),
                )
            )
        cpu = psutil.cpu_percent(interval=None)
        ram = psutil.virtual_memory()
        self._cpu.append(cpu)
        self._ram.append(ram.percent)
        return MachineSample(rows, reason, cpu, int(ram.used), int(ram.total), tuple(self._cpu), tuple(self._ram))
