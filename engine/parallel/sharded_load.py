"""The DiT and T5 of either checkpoint layout, each rank loading only its own FSDP2 shard."""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel
from torch.distributed.device_mesh import DeviceMesh
from transformers import UMT5EncoderModel

from engine.checks import CheckpointLayout
from engine.convert import t5
from engine.loaders.assign import diffusers_keep_fp32, ignored_unexpected, transformers_keep_fp32
from engine.loaders.components import (
    empty_text_encoder,
    empty_transformer,
    text_encoder_lazy_weights,
    transformer_lazy_weights,
    weights_source,
)
from engine.parallel.fsdp import load_sharded
from engine.tasks import TaskConfig


def load_transformer_sharded(
    layout: CheckpointLayout, task: TaskConfig, dtype: torch.dtype, device: torch.device, mesh: DeviceMesh
) -> WanTransformer3DModel:
    model = empty_transformer(layout, task)
    load_sharded(
        model,
        model.blocks,
        transformer_lazy_weights(layout),
        mesh=mesh,
        dtype=dtype,
        device=device,
        what="transformer",
        source=weights_source(layout, "transformer"),
        keep_fp32=diffusers_keep_fp32(model),
        ignore=ignored_unexpected(model),
    )
    return model


def load_text_encoder_sharded(
    layout: CheckpointLayout, task: TaskConfig, dtype: torch.dtype, device: torch.device, mesh: DeviceMesh
) -> UMT5EncoderModel:
    model = empty_text_encoder(layout, task)
    load_sharded(
        model,
        model.encoder.block,
        text_encoder_lazy_weights(layout),
        mesh=mesh,
        dtype=dtype,
        device=device,
        what="text encoder",
        source=weights_source(layout, "text_encoder"),
        keep_fp32=transformers_keep_fp32(model, dtype),
        tied=t5.TIED,
        ignore=ignored_unexpected(model),
    )
    return model
