"""A component of either checkpoint layout (the DiT or T5), each rank loading only its own FSDP2 shard."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from engine.checks import CheckpointLayout
from engine.loaders.components import Component, empty, key_rules, lazy_weights
from engine.parallel.fsdp import load_sharded
from engine.tasks import TaskConfig

M = TypeVar("M", bound=nn.Module)


def load_shard(
    component: Component[M],
    layout: CheckpointLayout,
    task: TaskConfig,
    dtype: torch.dtype,
    device: torch.device,
    mesh: DeviceMesh,
) -> M:
    """`component` sharded over `mesh`, one FSDP unit per block, this rank's rows read straight to `device`."""
    if component.fsdp_blocks is None:
        raise ValueError(f"the {component.what} has no FSDP blocks: it is always loaded whole")
    model = empty(component, layout, task)
    rules = key_rules(component, model, layout, dtype)
    load_sharded(
        model,
        component.fsdp_blocks(model),
        lazy_weights(component, layout),
        mesh=mesh,
        dtype=dtype,
        device=device,
        **rules,
    )
    return model
