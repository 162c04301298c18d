"""Architecture presets of the random-weight checkpoint, and the library configs they give.

Everything that the task fixes stays as the real model has it: 512 text tokens, 16 latent channels, 36 DiT
input channels, patch (1, 2, 2), VAE strides 4/8/8, the CLIP ViT layout. Only widths and depths shrink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import CLIPVisionConfig, UMT5Config

from engine.convert import vae
from engine.tasks import TaskConfig


@dataclass(frozen=True)
class Preset:
    name: str
    dit_dim: int
    dit_ffn: int
    dit_layers: int
    t5_dim: int
    t5_heads: int
    t5_ff: int
    t5_layers: int
    clip_dim: int = 32
    clip_layers: int = 3
    clip_patch: int = 14
    clip_image: int = 28
    vae_base_dim: int = 8
    # The official checkpoint's text tower of CLIP, only stored so the file looks like the real one.
    clip_text_layers: int = 1
    clip_text_positions: int = 514
    # Shard the DiT file above this many bytes (exercises index-based loading); None keeps one file.
    dit_shard_bytes: int | None = None


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", dit_dim=64, dit_ffn=128, dit_layers=2, t5_dim=32, t5_heads=4, t5_ff=64, t5_layers=2),
    # DiT ~84 MB + T5 ~11 MB of float32: big enough to see FSDP sharding in memory figures.
    "medium": Preset(
        "medium",
        dit_dim=512,
        dit_ffn=2048,
        dit_layers=4,
        t5_dim=256,
        t5_heads=4,
        t5_ff=512,
        t5_layers=4,
        dit_shard_bytes=40_000_000,
    ),
}


def t5_config(preset: Preset, vocab_size: int) -> UMT5Config:
    return UMT5Config(
        vocab_size=vocab_size,
        d_model=preset.t5_dim,
        d_kv=preset.t5_dim // preset.t5_heads,
        d_ff=preset.t5_ff,
        num_layers=preset.t5_layers,
        num_decoder_layers=preset.t5_layers,
        num_heads=preset.t5_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
    )


def clip_config(preset: Preset, task: TaskConfig) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=preset.clip_dim,
        intermediate_size=4 * preset.clip_dim,
        projection_dim=preset.clip_dim,
        num_hidden_layers=preset.clip_layers,
        num_attention_heads=task.clip_vision.num_heads,
        num_channels=3,
        image_size=preset.clip_image,
        patch_size=preset.clip_patch,
        hidden_act="gelu",
        layer_norm_eps=task.clip_vision.layer_norm_eps,
    )


def clip_tokens_per_image(preset: Preset) -> int:
    return (preset.clip_image // preset.clip_patch) ** 2 + 1


def transformer_config(preset: Preset, task: TaskConfig) -> dict[str, Any]:
    heads = task.num_heads
    return {
        "patch_size": list(task.patch_size),
        "num_attention_heads": heads,
        "attention_head_dim": preset.dit_dim // heads,
        "in_channels": 36,
        "out_channels": 16,
        "text_dim": preset.t5_dim,
        "freq_dim": 256,
        "ffn_dim": preset.dit_ffn,
        "num_layers": preset.dit_layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": preset.clip_dim,
        "added_kv_proj_dim": preset.dit_dim,
        "rope_max_seq_len": 1024,
        # The first and the last frame's CLIP tokens, one position table over both.
        "pos_embed_seq_len": 2 * clip_tokens_per_image(preset),
    }


def vae_config(preset: Preset) -> dict[str, Any]:
    return {
        "base_dim": preset.vae_base_dim,
        "z_dim": 16,
        "dim_mult": list(vae.DIM_MULT),
        "num_res_blocks": vae.NUM_RES_BLOCKS,
        "attn_scales": [],
        "temperal_downsample": list(vae.TEMPORAL_DOWNSAMPLE),
    }
