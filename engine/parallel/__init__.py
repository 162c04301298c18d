"""How one run spreads over its ranks: FSDP2 for the DiT and T5 (`fsdp`), Ulysses sequence parallelism for
the DiT's self-attention (`ulysses`), and the watch that turns a lost peer or a hung collective into an
error event (`watch`).

All ranks of a run compute the same video. With `cfg_size` 2 (`cfg`), the first half of the ranks computes
the conditional branch of guidance and the second half the unconditional one, and they swap predictions
each step. Ulysses splits the sequence within groups of `ulysses_size` consecutive ranks of a half. FSDP
shards T5 over every rank and the DiT over the ranks of a half. The layout uses every rank once:
cfg_size x ulysses_size x ring_size == world size (engine.cli_args.layout_problem), unless every size is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from engine.parallel.cfg import CfgSplit, cfg_mesh, cfg_split
from engine.parallel.ulysses import SequenceSplit


@dataclass(frozen=True)
class ParallelPlan:
    world_size: int = 1
    rank: int = 0
    dit_fsdp: bool = False
    t5_fsdp: bool = False
    ulysses_size: int = 1
    cfg_size: int = 1

    @classmethod
    def of(
        cls, world_size: int, rank: int, dit_fsdp: bool, t5_fsdp: bool, ulysses_size: int, cfg_size: int = 1
    ) -> ParallelPlan:
        """Flags as given; on a single process every one of them means nothing and is dropped."""
        many = world_size > 1
        return cls(
            world_size, rank, dit_fsdp and many, t5_fsdp and many, ulysses_size if many else 1, cfg_size if many else 1
        )

    @property
    def fsdp(self) -> bool:
        return self.dit_fsdp or self.t5_fsdp

    @property
    def distributed_dit(self) -> bool:
        return self.dit_fsdp or self.ulysses_size > 1 or self.cfg_size > 1

    @property
    def half(self) -> int:
        """How many ranks compute one guidance branch (all of them without CFG-parallel)."""
        return self.world_size // self.cfg_size

    def describe(self) -> str:
        if self.world_size == 1 and not self.fsdp:
            return "a single process: every model is loaded whole"
        parts = [
            f"DiT {'sharded with FSDP2' if self.dit_fsdp else 'whole on every rank'}",
            f"T5 {'sharded with FSDP2' if self.t5_fsdp else 'whole on every rank'}",
        ]
        if self.cfg_size > 1:
            parts[0] = f"DiT {'sharded with FSDP2 within each half' if self.dit_fsdp else 'whole on every rank'}"
            parts.append(
                f"CFG-parallel: the conditional branch on {_ranks(0, self.half)}, "
                f"the unconditional one on {_ranks(self.half, self.world_size)}"
            )
        if self.ulysses_size > 1:
            groups = self.world_size // self.ulysses_size
            parts.append(
                f"self-attention sequence-parallel over {self.ulysses_size} ranks (Ulysses)"
                + (f", {groups} groups" if groups > 1 else "")
            )
        return f"{self.world_size} ranks: " + "; ".join(parts)


def _ranks(first: int, stop: int) -> str:
    return f"rank {first}" if stop - first == 1 else f"ranks {first}-{stop - 1}"


def fsdp_mesh(device: torch.device, world_size: int) -> DeviceMesh:
    """One dimension over every rank; FSDP2's collectives run on its process group (NCCL or gloo)."""
    return init_device_mesh(device.type, (world_size,))


def ulysses_split(plan: ParallelPlan) -> SequenceSplit:
    """This rank's Ulysses group: ranks [g * size, (g + 1) * size). Every rank creates every group, in the
    same order, as torch.distributed requires."""
    size = plan.ulysses_size
    if size == plan.world_size:
        return SequenceSplit(group=None, size=size, rank=plan.rank)
    mine = None
    for first in range(0, plan.world_size, size):
        group = dist.new_group(list(range(first, first + size)))
        if first <= plan.rank < first + size:
            mine = group
    return SequenceSplit(group=mine, size=size, rank=plan.rank % size)


__all__ = ["CfgSplit", "ParallelPlan", "SequenceSplit", "cfg_mesh", "cfg_split", "fsdp_mesh", "ulysses_split"]
