"""The vision tower of Wan's XLM-RoBERTa CLIP (`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`)
<-> transformers `CLIPVisionModel`.

The official file holds a whole `wan.modules.clip.XLMRobertaCLIP`; only `visual.*` is used by FLF2V, and of
that not the pooling head. The official code reads the penultimate block's output (`use_31_block=True`),
which is `CLIPVisionModel(..., output_hidden_states=True).hidden_states[-2]`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor
from transformers import CLIPVisionConfig

# Official name inside `visual.transformer.{i}.` -> library name inside `encoder.layers.{i}.`
# (the fused `attn.to_qkv` is handled apart).
_BLOCK = {
    "norm1": "layer_norm1",
    "attn.proj": "self_attn.out_proj",
    "norm2": "layer_norm2",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
}
_TOP = {
    "visual.patch_embedding.weight": "embeddings.patch_embedding.weight",
    "visual.cls_embedding": "embeddings.class_embedding",
    "visual.pos_embedding": "embeddings.position_embedding.weight",
    "visual.pre_norm.weight": "pre_layrnorm.weight",
    "visual.pre_norm.bias": "pre_layrnorm.bias",
    "visual.post_norm.weight": "post_layernorm.weight",
    "visual.post_norm.bias": "post_layernorm.bias",
}
_QKV = ("q_proj", "k_proj", "v_proj")  # the order of the fused projection's output rows
_BLOCK_INV = {v: k for k, v in _BLOCK.items()}
_TOP_INV = {v: k for k, v in _TOP.items()}
_OFFICIAL_BLOCK = re.compile(r"visual\.transformer\.(\d+)\.(.+)\.(weight|bias)")
_LIBRARY_BLOCK = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")
_LIBRARY_QKV = re.compile(r"self_attn\.([qkv])_proj")


def _ignored(official_key: str) -> bool:
    # The text tower, the contrastive temperature and the pooled projection play no part in FLF2V.
    return official_key.startswith("textual.") or official_key in ("log_scale", "visual.head")


def library_keys(official_key: str) -> tuple[str, ...]:
    if _ignored(official_key):
        return ()
    if official_key in _TOP:
        return (_TOP[official_key],)
    m = _OFFICIAL_BLOCK.fullmatch(official_key)
    if m:
        layer, name, kind = m.groups()
        if name == "attn.to_qkv":
            return tuple(f"encoder.layers.{layer}.self_attn.{p}.{kind}" for p in _QKV)
        if name in _BLOCK:
            return (f"encoder.layers.{layer}.{_BLOCK[name]}.{kind}",)
    return (official_key,)


def to_library(official_key: str, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
    keys = library_keys(official_key)
    if len(keys) == 3:
        yield from zip(keys, tensor.chunk(3, dim=0), strict=True)
    elif official_key == "visual.cls_embedding":  # [1, 1, D] -> [D]
        yield keys[0], tensor.reshape(-1)
    elif official_key == "visual.pos_embedding":  # [1, L, D] -> an embedding table [L, D]
        yield keys[0], tensor.reshape(tensor.shape[-2], tensor.shape[-1])
    else:
        for key in keys:
            yield key, tensor


def official_key(library_key: str) -> str | None:
    if library_key in _TOP_INV:
        return _TOP_INV[library_key]
    m = _LIBRARY_BLOCK.fullmatch(library_key)
    if m:
        layer, name, kind = m.groups()
        if _LIBRARY_QKV.fullmatch(name):
            return f"visual.transformer.{layer}.attn.to_qkv.{kind}"
        if name in _BLOCK_INV:
            return f"visual.transformer.{layer}.{_BLOCK_INV[name]}.{kind}"
    raise KeyError(f"no official CLIP name for {library_key}")


def to_official(library_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The `visual.*` tensors (without `visual.head`, which the library model lacks)."""
    out: dict[str, Tensor] = {}
    for key, tensor in library_state.items():
        name = official_key(key)
        if name is None:
            continue
        if name.endswith((".to_qkv.weight", ".to_qkv.bias")):
            if name not in out:
                prefix, _, kind = key.rsplit(".", 2)
                out[name] = torch.cat([library_state[f"{prefix}.{p}.{kind}"] for p in _QKV])
        elif name == "visual.cls_embedding":
            out[name] = tensor.reshape(1, 1, -1)
        elif name == "visual.pos_embedding":
            out[name] = tensor.reshape(1, *tensor.shape)
        else:
            out[name] = tensor
    return out


def config_from_shapes(
    shapes: Mapping[str, Sequence[int]], num_heads: int, layer_norm_eps: float = 1e-5
) -> CLIPVisionConfig:
    """The CLIPVisionConfig of an official CLIP state dict; the head count is the one thing shapes cannot tell."""
    hidden, _, patch, _ = shapes["visual.patch_embedding.weight"]
    positions = shapes["visual.pos_embedding"][1]
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise ValueError(f"CLIP position table of {positions} rows is not a class token plus a square grid")
    if hidden % num_heads:
        raise ValueError(f"CLIP width {hidden} is not a multiple of {num_heads} heads")
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := _OFFICIAL_BLOCK.fullmatch(k)))
    head = shapes.get("visual.head")
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=shapes["visual.transformer.0.mlp.0.weight"][0],
        projection_dim=head[1] if head else hidden,
        num_hidden_layers=layers,
        num_attention_heads=num_heads,
        num_channels=3,
        image_size=grid * patch,
        patch_size=patch,
        # Wan builds its ViT-H/14 with activation='gelu' (exact erf), not OpenAI's quick_gelu.
        hidden_act="gelu",
        layer_norm_eps=layer_norm_eps,
    )
