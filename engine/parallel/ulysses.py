"""Ulysses sequence parallelism for diffusers' WanTransformer3DModel, written on torch.distributed alone, so
it runs on gloo (CPU) as it does on NCCL.

The patchified video tokens (and their rotary table) are split across the ranks of a group right after the
patch embedding, and gathered back after the output projection. Everything between works token by token,
except self-attention: there an all-to-all turns [this rank's tokens, all heads] into [all tokens, this
rank's heads], attention runs, and a second all-to-all turns it back. Cross-attention to the text and image
tokens needs nothing: every rank's queries attend to the full, local context.

A token count that does not divide by the group size is padded with zero tokens at the end. Padding never
reaches a real token: the padded keys and values are dropped before attention, and everything else is per
token; the padded outputs are cut off at the gather.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_wan import _get_qkv_projections
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


@dataclass
class SequenceSplit:
    """One Ulysses group as this rank sees it; `length` is the real token count of the current forward."""

    group: dist.ProcessGroup | None
    size: int
    rank: int
    length: int = 0
    handles: list[RemovableHandle] = field(default_factory=list)

    def shard(self, x: Tensor, dim: int) -> Tensor:
        """This rank's part of `x` along `dim`, after padding `dim` with zeros to a multiple of the size."""
        n = x.shape[dim]
        pad = -n % self.size
        if pad:
            shape = list(x.shape)
            shape[dim] = pad
            x = torch.cat([x, x.new_zeros(shape)], dim=dim)
        return x.chunk(self.size, dim=dim)[self.rank].contiguous()

    def gather(self, x: Tensor, dim: int) -> Tensor:
        """Every rank's part of `x` along `dim`, joined, with the padding cut off."""
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=dim).narrow(dim, 0, self.length)


def _all_to_all(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def tokens_to_heads(x: Tensor, split: SequenceSplit) -> Tensor:
    """[B, S/n, H, D] (this rank's tokens) -> [B, S, H/n, D] (this rank's heads)."""
    b, s, h, d = x.shape
    n = split.size
    send = x.reshape(b, s, n, h // n, d).permute(2, 0, 1, 3, 4).contiguous()
    got = _all_to_all(send, split.group)  # [source rank, B, S/n, H/n, D]; source rank r sent tokens part r
    return got.permute(1, 0, 2, 3, 4).reshape(b, n * s, h // n, d)


def heads_to_tokens(x: Tensor, split: SequenceSplit) -> Tensor:
    """[B, S, H/n, D] (this rank's heads) -> [B, S/n, H, D] (this rank's tokens)."""
    b, full, hn, d = x.shape
    n = split.size
    s = full // n
    send = x.reshape(b, n, s, hn, d).permute(1, 0, 2, 3, 4).contiguous()
    got = _all_to_all(send, split.group)  # [source rank, B, S/n, H/n, D]; source rank r sent head group r
    return got.permute(1, 2, 0, 3, 4).reshape(b, s, n * hn, d)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Wan's rotary embedding of x [B, S, H, D] by its rope's cos and sin [1, S, 1, D], through diffusers'
    own apply_rotary_emb: WanAttnProcessor's copy of it is local to its __call__ and cannot be imported.
    Both turn interleaved (even, odd) channel pairs, in the rope table's float64 on the CPU, and give the
    same numbers (tests/unit/test_ulysses.py)."""
    return apply_rotary_emb(x, (cos[0, :, 0], sin[0, :, 0]), use_real=True, use_real_unbind_dim=-1, sequence_dim=1)


class UlyssesSelfAttention:
    """Attention processor for a WanAttention used as self-attention (attn1), sequence-parallel over `split`.

    Same computation as diffusers' WanAttnProcessor for self-attention, with diffusers' own projection and
    rotary functions; only the layout around the attention kernel changes.
    """

    def __init__(self, split: SequenceSplit, backend: Any = None) -> None:
        self.split = split
        self._attention_backend = backend

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        rotary_emb: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise RuntimeError("UlyssesSelfAttention serves self-attention only; cross-attention stays local")
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)  # across all heads: before the heads are split
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = rotate(query, *rotary_emb), rotate(key, *rotary_emb)
        query, key, value = (tokens_to_heads(t, self.split) for t in (query, key, value))
        length = self.split.length
        out = dispatch_attention_fn(
            query,
            key[:, :length],
            value[:, :length],
            attn_mask=None,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
        )
        out = heads_to_tokens(out, self.split).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def _split_rotary(split: SequenceSplit) -> Callable[..., tuple[Tensor, Tensor]]:
    def hook(_module: nn.Module, _args: Any, output: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        cos, sin = output  # [1, S, 1, D]
        split.length = cos.shape[1]
        return split.shard(cos, 1), split.shard(sin, 1)

    return hook


def _split_tokens(split: SequenceSplit) -> Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]:
    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict]:
        if args:
            return (split.shard(args[0], 1), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": split.shard(kwargs["hidden_states"], 1)}

    return hook


def _gather_tokens(split: SequenceSplit) -> Callable[..., Tensor]:
    def hook(_module: nn.Module, _args: Any, output: Tensor) -> Tensor:
        return split.gather(output, 1)

    return hook


def enable_ulysses(transformer: nn.Module, split: SequenceSplit) -> SequenceSplit:
    """Make `transformer` (a WanTransformer3DModel) sequence-parallel over `split`; `split.handles` undo it."""
    if transformer.config.num_attention_heads % split.size:
        raise ValueError(
            f"ulysses_size {split.size} must divide the model's {transformer.config.num_attention_heads} heads"
        )
    split.handles.append(transformer.rope.register_forward_hook(_split_rotary(split)))
    split.handles.append(transformer.blocks[0].register_forward_pre_hook(_split_tokens(split), with_kwargs=True))
    split.handles.append(transformer.proj_out.register_forward_hook(_gather_tokens(split)))
    for block in transformer.blocks:
        backend = getattr(block.attn1.processor, "_attention_backend", None)
        block.attn1.set_processor(UlyssesSelfAttention(split, backend))
    return split
