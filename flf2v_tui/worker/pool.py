"""The worker's slots: GPUs (one per rank, disjoint sets) or CPU slots (one per job, whatever its ranks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from flf2v_tui.gpus import GpuSource, GpuUnavailable
from storage.claim import Assignment


class PoolError(ValueError):
    pass


def parse_gpu_list(text: str, what: str = "--gpus") -> list[int]:
    """GPU indices from `0,1,2` (the worker's --gpus or FLF2V_GPUS, named by `what`); submit sizes a job's
    ranks with it too (rank_capacity), so both read the list alike."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise PoolError(f"{what} {text!r} must be GPU indices separated by commas, e.g. 0,1,2,3") from None
    if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise PoolError(f"{what} {text!r} must list distinct indices of 0 or more, e.g. 0,1")
    return values


@dataclass
class Pool:
    device: str  # "cuda" or "cpu"
    slots: list[str]
    source: GpuSource | None = None
    busy: dict[str, int] = field(default_factory=dict)  # slot -> attempt id
    # slot -> the idle warm group that holds it (its models loaded, no job): not free, but given up on demand
    warm: dict[str, str] = field(default_factory=dict)
    warm_labels: dict[str, str] = field(default_factory=dict)  # group -> what `flf2v gpus` says holds the slots
    blocked: dict[str, str] = field(default_factory=dict)  # free GPU -> why it is not handed out
    note: str = ""

    @classmethod
    def build(
        cls, source: GpuSource, gpus: str | None = None, cpu_slots: int | None = None, nvml_required: bool = False
    ) -> Pool:
        """From --gpus / FLF2V_GPUS, else every GPU NVML sees, else CPU slots (default 1)."""
        gpus = gpus if gpus is not None else os.environ.get("FLF2V_GPUS") or None
        if cpu_slots is not None and gpus is None:
            if cpu_slots < 1:
                raise PoolError("--cpu-slots must be at least 1")
            return cls("cpu", [f"cpu{i}" for i in range(cpu_slots)], note="CPU slots (asked for)")
        try:
            devices = source.devices()
            reason = "" if devices else "NVML found no GPU"
        except GpuUnavailable as exc:
            devices, reason = [], str(exc)
        if gpus is not None:
            wanted = parse_gpu_list(gpus)
            known = {d.index for d in devices}
            missing = [g for g in wanted if g not in known]
            if missing:
                raise PoolError(
                    f"--gpus {gpus}: GPU {missing[0]} is not on this machine"
                    + (f" (NVML sees {len(devices)})" if devices else f" ({reason})")
                )
            return cls("cuda", [str(g) for g in wanted], source, note=f"GPUs {gpus}")
        if devices:
            return cls("cuda", [str(d.index) for d in devices], source, note="all GPUs NVML sees")
        if nvml_required:
            raise PoolError(reason)
        return cls("cpu", [f"cpu{i}" for i in range(cpu_slots or 1)], note=f"CPU slots: {reason}")

    def free(self) -> list[str]:
        return [s for s in self.slots if s not in self.busy and s not in self.blocked and s not in self.warm]

    def refresh(self) -> None:
        """Mark free GPUs that other programs compute on as blocked (they are never handed out). A display
        server's graphics context does not count: it would block a workstation's first GPU forever."""
        if self.device != "cuda" or self.source is None:
            return
        try:
            devices = {str(d.index): d for d in self.source.devices()}
        except GpuUnavailable as exc:
            self.blocked = {s: str(exc) for s in self.slots if s not in self.busy}
            return
        blocked = {}
        for slot in self.slots:
            info = devices.get(slot)
            compute = [p for p in info.processes if p.kind == "compute"] if info else []
            if slot in self.busy or slot in self.warm or not compute:
                continue
            pids = ", ".join(str(p.pid) for p in compute[:3])
            blocked[slot] = f"GPU {slot} is used by another program (pid {pids})"
        self.blocked = blocked

    def fit(self, ranks: int, reclaim: bool = False) -> Assignment | str:
        """An assignment for a job of `ranks` ranks, or why not ("never: ..." if it can never fit here).
        `reclaim`: slots that idle warm groups hold count too, after the free ones (the worker stops those
        groups before it starts the job)."""
        free = self.free() + ([s for s in self.slots if s in self.warm] if reclaim else [])
        if self.device == "cpu":
            if free:
                return Assignment("cpu", (free[0],))
            return f"waiting for a CPU slot: all {len(self.slots)} in use"
        if ranks > len(self.slots):
            return f"never: needs {ranks} GPUs; the worker has {len(self.slots)} (start it with more --gpus)"
        if len(free) >= ranks:
            return Assignment("cuda", tuple(free[:ranks]))
        text = f"waiting for {ranks} GPU{'s' if ranks > 1 else ''}: {len(free)} free of {len(self.slots)}"
        if self.blocked:
            text += "; " + "; ".join(self.blocked.values())
        return text

    def take(self, assignment: Assignment, attempt_id: int) -> None:
        for slot in assignment.slots:
            self.busy[slot] = attempt_id
            self.warm.pop(slot, None)

    def release(self, attempt_id: int) -> None:
        self.busy = {s: a for s, a in self.busy.items() if a != attempt_id}

    def hold_warm(self, slots: tuple[str, ...], group: str, label: str = "") -> None:
        """An idle warm group keeps its slots: shown as held, and handed to a job only of its key (or after the
        group is stopped)."""
        for slot in slots:
            self.warm[slot] = group
        self.warm_labels[group] = label or group

    def release_warm(self, group: str) -> None:
        self.warm = {s: g for s, g in self.warm.items() if g != group}
        self.warm_labels.pop(group, None)

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "slots": self.slots,
            "busy": self.busy,
            "warm": {slot: self.warm_labels.get(group, group) for slot, group in self.warm.items()},
            "blocked": self.blocked,
            "note": self.note,
        }
