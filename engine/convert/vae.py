"""The official Wan2.1 VAE (`Wan2.1_VAE.pth`, a `wan.modules.vae.WanVAE_`) <-> diffusers `AutoencoderKLWan`.

Forward names come from diffusers' own `convert_wan_vae_to_diffusers`; the inverse is written out from
WanVAE_'s structure. Both assume the official layout of blocks (dim_mult [1, 2, 4, 4], two residual blocks
per level, no attention outside the middle blocks); only the widths may differ.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from torch import Tensor

# The official architecture, fixed in wan/modules/vae.py:_video_vae; only base_dim and z_dim are inferred.
DIM_MULT = (1, 2, 4, 4)
NUM_RES_BLOCKS = 2
TEMPORAL_DOWNSAMPLE = (False, True, True)

# Inside a residual block: library module -> official module (residual = [norm, silu, conv, norm, silu, drop, conv]).
_RESNET_INV = {
    "norm1": "residual.0",
    "conv1": "residual.2",
    "norm2": "residual.3",
    "conv2": "residual.6",
    "conv_shortcut": "shortcut",
}
_TOP_INV = {
    "quant_conv": "conv1",
    "post_quant_conv": "conv2",
    "encoder.conv_in": "encoder.conv1",
    "decoder.conv_in": "decoder.conv1",
    "encoder.norm_out": "encoder.head.0",
    "encoder.conv_out": "encoder.head.2",
    "decoder.norm_out": "decoder.head.0",
    "decoder.conv_out": "decoder.head.2",
}
# The decoder's up block b holds NUM_RES_BLOCKS + 1 residual blocks and then one upsampler; officially they
# are one flat Sequential.
_PER_UP_BLOCK = NUM_RES_BLOCKS + 2


@functools.lru_cache(maxsize=4096)
def library_keys(official_key: str) -> tuple[str, ...]:
    # The converter maps each key on its own and moves values untouched, so names alone give the mapping.
    return tuple(convert_wan_vae_to_diffusers({official_key: official_key}))


def to_library(official_key: str, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
    for key in library_keys(official_key):
        yield key, tensor


def _resnet(prefix: str, rest: str) -> str:
    module, _, param = rest.rpartition(".")
    return f"{prefix}.{_RESNET_INV.get(module, module)}.{param}"


def official_key(library_key: str) -> str | None:
    module, _, param = library_key.rpartition(".")
    if module in _TOP_INV:
        return f"{_TOP_INV[module]}.{param}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)", library_key)
    if m:
        side, kind, index, rest = m.groups()
        if kind == "attentions":  # the middle Sequential is [resnet, attention, resnet]
            return f"{side}.middle.1.{rest}"
        return _resnet(f"{side}.middle.{2 * int(index)}", rest)
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", library_key)
    if m:
        index, rest = m.groups()
        if rest.startswith(("resample.", "time_conv.")):
            return f"encoder.downsamples.{index}.{rest}"
        return _resnet(f"encoder.downsamples.{index}", rest)
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", library_key)
    if m:
        block, kind, index, rest = m.groups()
        if kind == "upsamplers":
            return f"decoder.upsamples.{int(block) * _PER_UP_BLOCK + NUM_RES_BLOCKS + 1}.{rest}"
        return _resnet(f"decoder.upsamples.{int(block) * _PER_UP_BLOCK + int(index)}", rest)
    raise KeyError(f"no official VAE name for {library_key}")


def to_official(library_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: t for key, t in library_state.items() if (name := official_key(key)) is not None}


def config_from_shapes(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """An AutoencoderKLWan config for an official VAE state dict: the official layout, widths from shapes.

    latents_mean / latents_std stay diffusers' defaults, which are the official WanVAE constants.
    """
    return {
        "base_dim": int(shapes["encoder.conv1.weight"][0]),
        "z_dim": int(shapes["conv2.weight"][0]),
        "dim_mult": list(DIM_MULT),
        "num_res_blocks": NUM_RES_BLOCKS,
        "attn_scales": [],
        "temperal_downsample": list(TEMPORAL_DOWNSAMPLE),
    }
