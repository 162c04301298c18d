"""Generate the random-weight models once, in library form, and write them in either checkpoint layout.

The official layout goes through the inverse key maps of `engine.convert`, so both layouts of one seed hold
the same numbers. Weights are stored in float32 everywhere, even where the real official file is bfloat16
(the T5 one): rounding to bfloat16 would break the layouts' bit-for-bit equality.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from safetensors.torch import save_file
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel
from transformers.utils import logging as hf_logging

from engine.conditioning import CLIP_MEAN, CLIP_STD
from engine.convert import clip, dit, t5, vae
from engine.loaders.assign import assign_weights, build_empty
from engine.tasks import TaskConfig
from engine.tiny import presets as P
from engine.tiny.tokenizers import t5_tokenizer, write_tokenizer, xlm_roberta_tokenizer
from engine.tiny.weights import model_shapes, random_state


@dataclass
class TinyModels:
    """Library configs and state dicts of all four models, plus what only the official CLIP file holds."""

    preset: P.Preset
    t5_config: UMT5Config
    t5_state: dict[str, Tensor]
    clip_config: CLIPVisionConfig
    clip_state: dict[str, Tensor]
    clip_extras: dict[str, Tensor]
    transformer_config: dict[str, Any]
    transformer_state: dict[str, Tensor]
    vae_config: dict[str, Any]
    vae_state: dict[str, Tensor]


def _clip_extra_shapes(preset: P.Preset, vocab: int) -> dict[str, tuple[int, ...]]:
    """The parts of wan.modules.clip.XLMRobertaCLIP that CLIPVisionModel lacks: the pooled projection
    `visual.head`, the XLM-RoBERTa text tower with its head, and the temperature `log_scale`."""
    d, out = preset.clip_dim, preset.clip_dim
    mid = (d + out) // 2
    shapes: dict[str, tuple[int, ...]] = {
        "visual.head": (d, out),
        "textual.token_embedding.weight": (vocab, d),
        "textual.type_embedding.weight": (1, d),
        "textual.pos_embedding.weight": (preset.clip_text_positions, d),
    }
    for i in range(preset.clip_text_layers):
        b = f"textual.blocks.{i}"
        for proj in ("q", "k", "v", "o"):
            shapes[f"{b}.attn.{proj}.weight"], shapes[f"{b}.attn.{proj}.bias"] = (d, d), (d,)
        shapes[f"{b}.norm1.weight"], shapes[f"{b}.norm1.bias"] = (d,), (d,)
        shapes[f"{b}.ffn.0.weight"], shapes[f"{b}.ffn.0.bias"] = (4 * d, d), (4 * d,)
        shapes[f"{b}.ffn.2.weight"], shapes[f"{b}.ffn.2.bias"] = (d, 4 * d), (d,)
        shapes[f"{b}.norm2.weight"], shapes[f"{b}.norm2.bias"] = (d,), (d,)
    shapes["textual.norm.weight"], shapes["textual.norm.bias"] = (d,), (d,)
    shapes["textual.head.0.weight"], shapes["textual.head.2.weight"] = (mid, d), (out, mid)
    shapes["log_scale"] = ()
    return shapes


def generate(preset: P.Preset, task: TaskConfig, seed: int) -> TinyModels:
    vocab = len(t5_tokenizer())
    t5_cfg = P.t5_config(preset, vocab_size=-(-vocab // 64) * 64)  # padded like umt5's 256384 rows
    clip_cfg = P.clip_config(preset, task)
    dit_cfg = P.transformer_config(preset, task)
    vae_cfg = P.vae_config(preset)
    t5_shapes = model_shapes(build_empty(lambda: UMT5EncoderModel(t5_cfg)))
    clip_shapes = model_shapes(build_empty(lambda: CLIPVisionModel(clip_cfg)))
    dit_shapes = model_shapes(build_empty(lambda: WanTransformer3DModel.from_config(dit_cfg)))
    vae_shapes = model_shapes(build_empty(lambda: AutoencoderKLWan.from_config(vae_cfg)))
    extras = _clip_extra_shapes(preset, len(xlm_roberta_tokenizer()))
    return TinyModels(
        preset=preset,
        t5_config=t5_cfg,
        t5_state=random_state(seed, "text_encoder", t5_shapes, skip=t5.TIED),
        clip_config=clip_cfg,
        clip_state=random_state(seed, "image_encoder", clip_shapes),
        clip_extras=random_state(seed, "clip_official_extras", extras),
        transformer_config=dit_cfg,
        transformer_state=random_state(seed, "transformer", dit_shapes),
        vae_config=vae_cfg,
        vae_state=random_state(seed, "vae", vae_shapes),
    )


def _save_safetensors(state: dict[str, Tensor], folder: Path, stem: str, shard_bytes: int | None) -> None:
    """One file, or shards named and indexed as diffusers / the official release do."""
    state = {k: v.contiguous() for k, v in state.items()}
    total = sum(t.numel() * t.element_size() for t in state.values())
    if shard_bytes is None or total <= shard_bytes:
        save_file(state, str(folder / f"{stem}.safetensors"), metadata={"format": "pt"})
        return
    shards: list[list[str]] = [[]]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    weight_map: dict[str, str] = {}
    for i, keys in enumerate(shards, start=1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: state[k] for k in keys}, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, name))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_official(models: TinyModels, task: TaskConfig, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {**dit.official_config(models.transformer_config), "_diffusers_version": diffusers.__version__}
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = dit.to_official(models.transformer_state)
    _save_safetensors(state, folder, "diffusion_pytorch_model", models.preset.dit_shard_bytes)
    torch.save(vae.to_official(models.vae_state), folder / task.vae_checkpoint)
    torch.save(t5.to_official(models.t5_state), folder / task.t5_checkpoint)
    clip_state = clip.to_official(models.clip_state)
    torch.save({**clip_state, **models.clip_extras}, folder / task.clip_checkpoint)
    write_tokenizer(t5_tokenizer(), folder / task.t5_tokenizer)
    write_tokenizer(xlm_roberta_tokenizer(), folder / task.clip_tokenizer)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _filled(empty: torch.nn.Module, state: dict[str, Tensor], tied: dict[str, str] | None = None) -> Any:
    assign_weights(empty, state.items(), dtype=torch.float32, device="cpu", what="tiny", source="generator", tied=tied)
    return empty


def _clip_image_processor() -> type:
    # transformers 5 warns at import of CLIPImageProcessor without torchvision; its PIL twin writes the same file.
    try:
        from transformers import CLIPImageProcessorPil as processor
    except ImportError:
        from transformers import CLIPImageProcessor as processor
    return processor


MODEL_INDEX = {
    "_class_name": "WanImageToVideoPipeline",
    "image_encoder": ["transformers", "CLIPVisionModel"],
    "image_processor": ["transformers", "CLIPImageProcessor"],
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}


def write_diffusers(models: TinyModels, task: TaskConfig, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    index = {**MODEL_INDEX, "_diffusers_version": diffusers.__version__}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    shard = f"{models.preset.dit_shard_bytes // 1_000_000}MB" if models.preset.dit_shard_bytes else "10GB"
    with _quiet_progress():
        transformer = build_empty(lambda: WanTransformer3DModel.from_config(models.transformer_config))
        _filled(transformer, models.transformer_state).save_pretrained(folder / "transformer", max_shard_size=shard)
        vae_model = build_empty(lambda: AutoencoderKLWan.from_config(models.vae_config))
        _filled(vae_model, models.vae_state).save_pretrained(folder / "vae")
        text = build_empty(lambda: UMT5EncoderModel(models.t5_config))
        _filled(text, models.t5_state, tied=t5.TIED).save_pretrained(folder / "text_encoder")
        image = build_empty(lambda: CLIPVisionModel(models.clip_config))
        _filled(image, models.clip_state).save_pretrained(folder / "image_encoder")
    write_tokenizer(t5_tokenizer(), folder / "tokenizer")
    size = models.clip_config.image_size
    _clip_image_processor()(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(str(folder / "image_processor"))
    UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=task.sample_shift
    ).save_pretrained(str(folder / "scheduler"))
