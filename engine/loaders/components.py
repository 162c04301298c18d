"""Each model of the FLF2V pipeline from either checkpoint layout: built empty, then its weights streamed in.

For every component there is `empty_X(layout, task)` (the model with meta parameters), `X_weights(layout)`
(lazy (library_key, tensor) pairs) and `load_X(layout, task, dtype, device)`, which joins the two. Keeping
them apart lets a caller time each stage, or place the weights itself (for example shard by shard).

The diffusers layout, too, is not loaded through the libraries' `from_pretrained`: only its configs and the
tokenizer are. Each model is built empty from its config and its safetensors are streamed in here, because
`from_pretrained` materialises the whole model on every rank, whereas FSDP loading (engine.parallel.fsdp)
needs the empty model to shard first and then each rank's rows alone. That this gives what `from_pretrained`
gives, every value and dtype (the modules the libraries keep in float32 included), is tested in
tests/functional/test_checkpoints.py (test_half_precision_matches_the_libraries_own_loading).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from torch import Tensor
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedTokenizerBase,
    UMT5Config,
    UMT5EncoderModel,
)

from engine.checks import OFFICIAL, CheckpointLayout
from engine.convert import clip, dit, t5, vae
from engine.errors import BadInputError
from engine.loaders.assign import (
    assign_weights,
    build_empty,
    diffusers_keep_fp32,
    ignored_unexpected,
    transformers_keep_fp32,
)
from engine.loaders.files import (
    pth_shapes,
    pth_tensors,
    read_json,
    reading,
    safetensors_files,
    safetensors_shapes,
    safetensors_tensors,
)
from engine.loaders.lazy import LazyTensor, pth_lazy, renamed, safetensors_lazy
from engine.tasks import TaskConfig

Weights = Iterator[tuple[str, Tensor]]
LazyWeights = Iterator[tuple[str, LazyTensor]]


def _official(layout: CheckpointLayout) -> bool:
    return layout.kind == OFFICIAL


def _first(layout: CheckpointLayout, component: str) -> Path:
    """The official layout's single .pth of a component, or a diffusers component's config.json."""
    return layout.files[component][0]


def _convert(pairs: Weights, to_library: Callable[[str, Tensor], Iterator[tuple[str, Tensor]]]) -> Weights:
    for key, tensor in pairs:
        yield from to_library(key, tensor)


def _config_error(path: Path, exc: Exception) -> BadInputError:
    return BadInputError(f"{path} does not describe a supported model ({exc})")


# ---- tokenizer ---------------------------------------------------------------------------------------


def load_tokenizer(layout: CheckpointLayout, task: TaskConfig) -> PreTrainedTokenizerBase:
    """The T5 tokenizer: `google/umt5-xxl/` (official) or `tokenizer/` (diffusers), never from the network."""
    folder = layout.files["tokenizer"][0].parent
    with reading(folder, "tokenizer folder"):
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


# ---- text encoder ------------------------------------------------------------------------------------


def empty_text_encoder(layout: CheckpointLayout, task: TaskConfig) -> UMT5EncoderModel:
    if _official(layout):
        path = _first(layout, "text_encoder")
        try:
            config = t5.config_from_shapes(pth_shapes(path))
        except (KeyError, ValueError) as exc:
            raise _config_error(path, exc) from exc
    else:
        path = _first(layout, "text_encoder")
        with reading(path, "config"):
            config = UMT5Config.from_pretrained(str(path.parent), local_files_only=True)
    return build_empty(lambda: UMT5EncoderModel(config))


def text_encoder_weights(layout: CheckpointLayout) -> Weights:
    if _official(layout):
        return _convert(pth_tensors(_first(layout, "text_encoder")), t5.to_library)
    return safetensors_tensors(safetensors_files(layout.files["text_encoder"]))


def text_encoder_lazy_weights(layout: CheckpointLayout) -> LazyWeights:
    """Library names -> tensors not read yet, for loading one FSDP shard per rank."""
    if _official(layout):
        return renamed(pth_lazy(_first(layout, "text_encoder")), t5.library_keys)
    return safetensors_lazy(safetensors_files(layout.files["text_encoder"]))


def load_text_encoder(
    layout: CheckpointLayout, task: TaskConfig, dtype: torch.dtype, device: torch.device | str
) -> UMT5EncoderModel:
    model = empty_text_encoder(layout, task)
    assign_weights(
        model,
        text_encoder_weights(layout),
        dtype=dtype,
        device=device,
        what="text encoder",
        source=weights_source(layout, "text_encoder"),
        keep_fp32=transformers_keep_fp32(model, dtype),
        tied=t5.TIED,
        ignore=ignored_unexpected(model),
    )
    return model


# ---- image encoder -----------------------------------------------------------------------------------


def empty_image_encoder(layout: CheckpointLayout, task: TaskConfig) -> CLIPVisionModel:
    if _official(layout):
        path = _first(layout, "image_encoder")
        arch = task.clip_vision
        try:
            config = clip.config_from_shapes(pth_shapes(path), arch.num_heads, arch.layer_norm_eps)
        except (KeyError, ValueError) as exc:
            raise _config_error(path, exc) from exc
    else:
        path = _first(layout, "image_encoder")
        with reading(path, "config"):
            config = CLIPVisionConfig.from_pretrained(str(path.parent), local_files_only=True)
    return build_empty(lambda: CLIPVisionModel(config))


def _strip_vision_prefix(pairs: Weights) -> Weights:
    # Files written by transformers 4 name the tower `vision_model.*`; transformers 5 dropped that level.
    for key, tensor in pairs:
        yield key.removeprefix("vision_model."), tensor


def image_encoder_weights(layout: CheckpointLayout) -> Weights:
    if _official(layout):
        return _convert(pth_tensors(_first(layout, "image_encoder")), clip.to_library)
    return _strip_vision_prefix(safetensors_tensors(safetensors_files(layout.files["image_encoder"])))


def load_image_encoder(
    layout: CheckpointLayout, task: TaskConfig, dtype: torch.dtype, device: torch.device | str
) -> CLIPVisionModel:
    model = empty_image_encoder(layout, task)
    assign_weights(
        model,
        image_encoder_weights(layout),
        dtype=dtype,
        device=device,
        what="image encoder",
        source=weights_source(layout, "image_encoder"),
        keep_fp32=transformers_keep_fp32(model, dtype),
        ignore=ignored_unexpected(model),
    )
    return model


# ---- VAE ---------------------------------------------------------------------------------------------


def empty_vae(layout: CheckpointLayout, task: TaskConfig) -> AutoencoderKLWan:
    if _official(layout):
        path = _first(layout, "vae")
        try:
            config = vae.config_from_shapes(pth_shapes(path))
        except (KeyError, ValueError) as exc:
            raise _config_error(path, exc) from exc
        if config["z_dim"] != 16:
            raise _config_error(path, ValueError(f"z_dim {config['z_dim']}, but Wan2.1's latent statistics are 16"))
    else:
        config = read_json(_first(layout, "vae"))
    return build_empty(lambda: AutoencoderKLWan.from_config(config))


def vae_weights(layout: CheckpointLayout) -> Weights:
    if _official(layout):
        return _convert(pth_tensors(_first(layout, "vae")), vae.to_library)
    return safetensors_tensors(safetensors_files(layout.files["vae"]))


def load_vae(
    layout: CheckpointLayout, task: TaskConfig, dtype: torch.dtype, device: torch.device | str
) -> AutoencoderKLWan:
    model = empty_vae(layout, task)
    assign_weights(
        model,
        vae_weights(layout),
        dtype=dtype,
        device=device,
        what="VAE",
        source=weights_source(layout, "vae"),
        keep_fp32=diffusers_keep_fp32(model),
        ignore=ignored_unexpected(model),
    )
    return model


# ---- transformer -------------------------------------------------------------------------------------


def _official_transformer_config(config_path: Path, shards: list[Path]) -> dict[str, Any]:
    official = read_json(config_path)
    try:
        return dit.config_from_official(official, safetensors_shapes(shards))
    except (KeyError, ValueError, TypeError) as exc:
        raise _config_error(config_path, exc) from exc


def empty_transformer(layout: CheckpointLayout, task: TaskConfig) -> WanTransformer3DModel:
    config_path = _first(layout, "transformer")
    if _official(layout):
        config = _official_transformer_config(config_path, safetensors_files(layout.files["transformer"]))
    else:
        config = read_json(config_path)
    return build_empty(lambda: WanTransformer3DModel.from_config(config))


def transformer_weights(layout: CheckpointLayout) -> Weights:
    pairs = safetensors_tensors(safetensors_files(layout.files["transformer"]))
    return _convert(pairs, dit.to_library) if _official(layout) else pairs


def transformer_lazy_weights(layout: CheckpointLayout) -> LazyWeights:
    """Library names -> tensors not read yet, for loading one FSDP shard per rank."""
    pairs = safetensors_lazy(safetensors_files(layout.files["transformer"]))
    return renamed(pairs, dit.library_keys) if _official(layout) else pairs


def load_transformer(
    layout: CheckpointLayout, task: TaskConfig, dtype: torch.dtype, device: torch.device | str
) -> WanTransformer3DModel:
    model = empty_transformer(layout, task)
    assign_weights(
        model,
        transformer_weights(layout),
        dtype=dtype,
        device=device,
        what="transformer",
        source=weights_source(layout, "transformer"),
        keep_fp32=diffusers_keep_fp32(model),
        ignore=ignored_unexpected(model),
    )
    return model


def weights_source(layout: CheckpointLayout, component: str) -> str:
    """How error messages name a component's weight files."""
    files = [p for p in layout.files[component] if not p.name.endswith(".json")]
    if len(files) == 1:
        return str(files[0])
    return f"{files[0].parent} ({len(files)} files)"
