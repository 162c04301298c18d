"""Wan's own T5 encoder (`models_t5_umt5-xxl-enc-bf16.pth`) <-> transformers `UMT5EncoderModel`.

The official file is the state dict of `wan.modules.t5.T5Encoder` built with `shared_pos=False`: every block
owns its relative-position table and there is no top-level one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from torch import Tensor
from transformers import UMT5Config

# Official name inside `blocks.{i}.` -> library name inside `encoder.block.{i}.`.
_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    # The official FFN is fc1(x) * gelu(gate(x)); transformers computes gelu(wi_0(x)) * wi_1(x).
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_TOP = {
    "token_embedding.weight": "shared.weight",
    "norm.weight": "encoder.final_layer_norm.weight",
}
_BLOCK_INV = {v: k for k, v in _BLOCK.items()}
_TOP_INV = {v: k for k, v in _TOP.items()}
_OFFICIAL_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_LIBRARY_BLOCK = re.compile(r"encoder\.block\.(\d+)\.(.+)")

# transformers ties the encoder's input embedding to `shared`; the official file stores it once.
TIED = {"encoder.embed_tokens.weight": "shared.weight"}


def library_keys(official_key: str) -> tuple[str, ...]:
    if official_key in _TOP:
        return (_TOP[official_key],)
    m = _OFFICIAL_BLOCK.fullmatch(official_key)
    if m and m.group(2) in _BLOCK:
        return (f"encoder.block.{m.group(1)}.{_BLOCK[m.group(2)]}",)
    return (official_key,)


def to_library(official_key: str, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
    for key in library_keys(official_key):
        yield key, tensor


def official_key(library_key: str) -> str | None:
    if library_key in TIED:
        return None
    if library_key in _TOP_INV:
        return _TOP_INV[library_key]
    m = _LIBRARY_BLOCK.fullmatch(library_key)
    if m and m.group(2) in _BLOCK_INV:
        return f"blocks.{m.group(1)}.{_BLOCK_INV[m.group(2)]}"
    raise KeyError(f"no official T5 name for {library_key}")


def to_official(library_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, tensor in library_state.items():
        name = official_key(key)
        if name is not None:
            out[name] = tensor
    return out


def config_from_shapes(shapes: Mapping[str, Sequence[int]]) -> UMT5Config:
    """The UMT5 config of an official T5 state dict, from its tensor shapes alone."""
    vocab, d_model = shapes["token_embedding.weight"]
    buckets, heads = shapes["blocks.0.pos_embedding.embedding.weight"]
    inner = shapes["blocks.0.attn.q.weight"][0]
    d_ff = shapes["blocks.0.ffn.fc1.weight"][0]
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := _OFFICIAL_BLOCK.fullmatch(k)))
    if inner % heads:
        raise ValueError(f"T5 attention width {inner} is not a multiple of its {heads} heads")
    return UMT5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        # The official T5RelativeEmbedding's default, which Wan never overrides.
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
    )
