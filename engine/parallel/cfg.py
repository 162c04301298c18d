"""CFG-parallel: the two branches of classifier-free guidance on two halves of the ranks at once.

Ranks [0, N/2) compute the conditional prediction and ranks [N/2, N) the unconditional one, each half with its
own Ulysses group(s) and its own FSDP shards of the DiT. After each forward, rank r and rank r + N/2 swap
their predictions (one all-gather of two), so every rank combines the same two tensors in the same order as
one process does: uncond + scale * (cond - uncond). Nothing is approximated: each half runs exactly the
separate forward a single process runs for its branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

CONDITIONAL, UNCONDITIONAL = 0, 1


@dataclass(frozen=True)
class CfgSplit:
    """This rank's guidance branch and the group of the ranks that share its place in the other half."""

    group: dist.ProcessGroup | None
    branch: int  # CONDITIONAL or UNCONDITIONAL

    def exchange(self, prediction: Tensor) -> tuple[Tensor, Tensor]:
        """(conditional, unconditional): this rank's prediction and its counterpart's."""
        parts = [torch.empty_like(prediction) for _ in range(2)]
        dist.all_gather(parts, prediction.contiguous(), group=self.group)
        return parts[CONDITIONAL], parts[UNCONDITIONAL]


def cfg_mesh(device: torch.device, world_size: int, cfg_size: int) -> DeviceMesh:
    """A 2-D mesh (cfg, group): `mesh["cfg"]` pairs each rank with its counterpart in the other half, and
    `mesh["group"]` holds the ranks of this rank's half (its FSDP mesh for the DiT). Every rank builds it,
    in the same order, as torch.distributed requires."""
    return init_device_mesh(device.type, (cfg_size, world_size // cfg_size), mesh_dim_names=("cfg", "group"))


def cfg_split(mesh: DeviceMesh) -> CfgSplit:
    return CfgSplit(group=mesh["cfg"].get_group(), branch=mesh.get_local_rank("cfg"))
