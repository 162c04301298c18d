"""The official Wan2.1 DiT (`config.json` + `diffusion_pytorch_model*.safetensors`, a `wan.modules.model.WanModel`)
<-> diffusers `WanTransformer3DModel`.

Forward names come from diffusers' own `convert_wan_transformer_to_diffusers`, plus the FLF2V position table
`img_emb.emb_pos`, which that converter leaves alone. The inverse is written out from WanModel's structure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from torch import Tensor

EMB_POS = ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed")

# Library module path -> official module path, outside the blocks.
_TOP_INV = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    # WanModel's MLPProj is Sequential(LayerNorm, Linear, GELU, Linear, LayerNorm).
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "proj_out": "head.head",
}
# Library module path -> official module path, inside `blocks.{i}.`.
_BLOCK_INV = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    # WanAttentionBlock's norm3 is the (affine) cross-attention norm, which diffusers calls norm2.
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
_LIBRARY_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias)")


@functools.lru_cache(maxsize=8192)
def library_keys(official_key: str) -> tuple[str, ...]:
    if official_key == EMB_POS[0]:
        return (EMB_POS[1],)
    # diffusers' converter renames by substring, one key at a time, and moves values untouched, so
    # feeding it one name at a time gives its mapping without loading any tensor.
    converted = convert_wan_transformer_to_diffusers({official_key: official_key})
    return tuple(converted)


def to_library(official_key: str, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
    for key in library_keys(official_key):
        yield key, tensor


def official_key(library_key: str) -> str | None:
    if library_key == EMB_POS[1]:
        return EMB_POS[0]
    if library_key == "scale_shift_table":
        return "head.modulation"
    m = re.fullmatch(r"blocks\.(\d+)\.scale_shift_table", library_key)
    if m:
        return f"blocks.{m.group(1)}.modulation"
    m = _LIBRARY_BLOCK.fullmatch(library_key)
    if m and m.group(2) in _BLOCK_INV:
        return f"blocks.{m.group(1)}.{_BLOCK_INV[m.group(2)]}.{m.group(3)}"
    module, _, kind = library_key.rpartition(".")
    if module in _TOP_INV and kind in ("weight", "bias"):
        return f"{_TOP_INV[module]}.{kind}"
    raise KeyError(f"no official DiT name for {library_key}")


def to_official(library_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: t for key, t in library_state.items() if (name := official_key(key)) is not None}


# The keys of WanModel's config.json; the rest of its constructor's arguments are not saved there.
OFFICIAL_CONFIG_KEYS = (
    "dim",
    "eps",
    "ffn_dim",
    "freq_dim",
    "in_dim",
    "model_type",
    "num_heads",
    "num_layers",
    "out_dim",
)


def config_from_official(official: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """A WanTransformer3DModel config from WanModel's config.json and the weight shapes.

    Raises ValueError naming what is missing or unsupported.
    """
    missing = [k for k in OFFICIAL_CONFIG_KEYS if k not in official]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)}")
    if official["model_type"] != "flf2v":
        raise ValueError(f"config.json has model_type {official['model_type']!r}; this engine runs 'flf2v' models")
    # diffusers' Wan attention assumes 512 text tokens (it splits image from text context by that count).
    if official.get("text_len", 512) != 512:
        raise ValueError(f"config.json has text_len {official['text_len']}; only 512 is supported")
    for key in ("patch_embedding.weight", "text_embedding.0.weight", "img_emb.proj.0.weight", EMB_POS[0]):
        if key not in shapes:
            raise ValueError(f"the weights lack {key}")
    dim, heads = int(official["dim"]), int(official["num_heads"])
    if dim % heads:
        raise ValueError(f"dim {dim} is not a multiple of num_heads {heads}")
    return {
        "patch_size": [int(s) for s in shapes["patch_embedding.weight"][2:]],
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": int(official["in_dim"]),
        "out_channels": int(official["out_dim"]),
        "text_dim": int(shapes["text_embedding.0.weight"][1]),
        "freq_dim": int(official["freq_dim"]),
        "ffn_dim": int(official["ffn_dim"]),
        "num_layers": int(official["num_layers"]),
        # WanModel's defaults for arguments its config.json does not record (qk_norm, cross_attn_norm).
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": float(official["eps"]),
        "image_dim": int(shapes["img_emb.proj.0.weight"][0]),
        "added_kv_proj_dim": dim,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": int(shapes[EMB_POS[0]][1]),
    }


def official_config(library: Mapping[str, Any]) -> dict[str, Any]:
    """WanModel's config.json for a WanTransformer3DModel config (what the tiny writer stores)."""
    return {
        "_class_name": "WanModel",
        "dim": library["num_attention_heads"] * library["attention_head_dim"],
        "eps": library["eps"],
        "ffn_dim": library["ffn_dim"],
        "freq_dim": library["freq_dim"],
        "in_dim": library["in_channels"],
        "model_type": "flf2v",
        "num_heads": library["num_attention_heads"],
        "num_layers": library["num_layers"],
        "out_dim": library["out_channels"],
        "text_len": 512,
    }
