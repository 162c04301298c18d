"""Each model of the FLF2V pipeline from either checkpoint layout: built empty, then its weights streamed in.

One `Component` entry per model holds all that differs between them (where its config comes from in each
layout, how official keys become the library's, which modules stay float32, which blocks FSDP shards); the
steps are written once: `empty(component, layout, task)` (the model with meta parameters), `weights` (lazy
(library_key, tensor) pairs), `lazy_weights` (the same, not read yet, for FSDP shards) and `load`, which
joins the first two. Keeping them apart lets a caller time each stage, or place the weights itself (for
example shard by shard, engine.parallel.sharded_load).

The diffusers layout, too, is not loaded through the libraries' `from_pretrained`: only its configs and the
tokenizer are. Each model is built empty from its config and its safetensors are streamed in here, because
`from_pretrained` materialises the whole model on every rank, whereas FSDP loading (engine.parallel.fsdp)
needs the empty model to shard first and then each rank's rows alone. That this gives what `from_pretrained`
gives, every value and dtype (the modules the libraries keep in float32 included), is tested in
tests/functional/test_checkpoints.py (test_half_precision_matches_the_libraries_own_loading).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypedDict, TypeVar

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from torch import Tensor, nn
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedConfig,
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
M = TypeVar("M", bound=nn.Module)
T = TypeVar("T")

# What deriving a config from official files raises when they describe no model we support.
_CONFIG_ERRORS = (KeyError, ValueError, TypeError)


@dataclass(frozen=True)
class WeightFormat:
    """How a component's weight files are read: every tensor in turn, or each one lazily, row range by range."""

    tensors: Callable[[list[Path]], Weights]
    lazy: Callable[[list[Path]], LazyWeights]


# The official T5, CLIP and VAE are each one .pth; the official DiT and every diffusers component, safetensors
# (one file, or an index and its shards).
PTH = WeightFormat(lambda files: pth_tensors(files[0]), lambda files: pth_lazy(files[0]))
SAFETENSORS = WeightFormat(
    lambda files: safetensors_tensors(safetensors_files(files)),
    lambda files: safetensors_lazy(safetensors_files(files)),
)


class KeyMap(Protocol):
    """An engine.convert module: how an official component's keys (and tensors) become the library's."""

    def to_library(self, official_key: str, tensor: Tensor) -> Weights: ...

    def library_keys(self, official_key: str) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Component(Generic[M]):
    """One model of the pipeline: all that differs in loading it, from either layout, whole or sharded."""

    key: str  # its entry in CheckpointLayout.files (the first file is the .pth or the config.json)
    what: str  # how messages name it
    build: Callable[[Any], M]  # the model from its config, of either layout
    official_config: Callable[[list[Path], TaskConfig], Any]  # raises KeyError/ValueError/TypeError if unsupported
    diffusers_config: Callable[[Path], Any]  # from the diffusers component's config.json
    official_format: WeightFormat
    official_keys: KeyMap
    keep_fp32: Callable[[M, torch.dtype], Callable[[str], bool]]  # keys the library keeps float32 under dtype
    tied: Mapping[str, str] = field(default_factory=dict)  # alias -> the key it shares storage with
    diffusers_key: Callable[[str], str] | None = None  # a diffusers file's key -> the library's, where they differ
    fsdp_blocks: Callable[[M], Iterable[nn.Module]] | None = None  # its FSDP units; None: never sharded


def _pretrained_config(cls: type[PreTrainedConfig]) -> Callable[[Path], PreTrainedConfig]:
    def config(path: Path) -> PreTrainedConfig:
        with reading(path, "config"):
            return cls.from_pretrained(str(path.parent), local_files_only=True)

    return config


def _diffusers_fp32(model: nn.Module, dtype: torch.dtype) -> Callable[[str], bool]:
    return diffusers_keep_fp32(model)


def _t5_config(files: list[Path], task: TaskConfig) -> UMT5Config:
    return t5.config_from_shapes(pth_shapes(files[0]))


def _clip_config(files: list[Path], task: TaskConfig) -> CLIPVisionConfig:
    arch = task.clip_vision
    return clip.config_from_shapes(pth_shapes(files[0]), arch.num_heads, arch.layer_norm_eps)


def _vae_config(files: list[Path], task: TaskConfig) -> dict[str, Any]:
    config = vae.config_from_shapes(pth_shapes(files[0]))
    if config["z_dim"] != 16:
        raise ValueError(f"z_dim {config['z_dim']}, but Wan2.1's latent statistics are 16")
    return config


def _transformer_config(files: list[Path], task: TaskConfig) -> dict[str, Any]:
    return dit.config_from_official(read_json(files[0]), safetensors_shapes(safetensors_files(files)))


def _strip_vision_prefix(key: str) -> str:
    # Files written by transformers 4 name the tower `vision_model.*`; transformers 5 dropped that level.
    return key.removeprefix("vision_model.")


TEXT_ENCODER: Component[UMT5EncoderModel] = Component(
    key="text_encoder",
    what="text encoder",
    build=UMT5EncoderModel,
    official_config=_t5_config,
    diffusers_config=_pretrained_config(UMT5Config),
    official_format=PTH,
    official_keys=t5,
    keep_fp32=transformers_keep_fp32,
    tied=t5.TIED,
    fsdp_blocks=lambda model: model.encoder.block,
)
IMAGE_ENCODER: Component[CLIPVisionModel] = Component(
    key="image_encoder",
    what="image encoder",
    build=CLIPVisionModel,
    official_config=_clip_config,
    diffusers_config=_pretrained_config(CLIPVisionConfig),
    official_format=PTH,
    official_keys=clip,
    keep_fp32=transformers_keep_fp32,
    diffusers_key=_strip_vision_prefix,
)
VAE: Component[AutoencoderKLWan] = Component(
    key="vae",
    what="VAE",
    build=AutoencoderKLWan.from_config,
    official_config=_vae_config,
    diffusers_config=read_json,
    official_format=PTH,
    official_keys=vae,
    keep_fp32=_diffusers_fp32,
)
TRANSFORMER: Component[WanTransformer3DModel] = Component(
    key="transformer",
    what="transformer",
    build=WanTransformer3DModel.from_config,
    official_config=_transformer_config,
    diffusers_config=read_json,
    official_format=SAFETENSORS,
    official_keys=dit,
    keep_fp32=_diffusers_fp32,
    fsdp_blocks=lambda model: model.blocks,
)
COMPONENTS: dict[str, Component[Any]] = {c.key: c for c in (TEXT_ENCODER, IMAGE_ENCODER, VAE, TRANSFORMER)}


class KeyRules(TypedDict):
    """How a checkpoint's keys must meet the model's: the same for whole and for sharded loading."""

    what: str
    source: str
    keep_fp32: Callable[[str], bool]
    tied: Mapping[str, str]
    ignore: Sequence[str]


def _official(layout: CheckpointLayout) -> bool:
    return layout.kind == OFFICIAL


def _convert(pairs: Weights, to_library: Callable[[str, Tensor], Weights]) -> Weights:
    for key, tensor in pairs:
        yield from to_library(key, tensor)


def _rekey(pairs: Iterator[tuple[str, T]], rename: Callable[[str], str] | None) -> Iterator[tuple[str, T]]:
    return pairs if rename is None else ((rename(key), value) for key, value in pairs)


def _config_error(path: Path, exc: Exception) -> BadInputError:
    return BadInputError(f"{path} does not describe a supported model ({exc})")


def load_tokenizer(layout: CheckpointLayout, task: TaskConfig) -> PreTrainedTokenizerBase:
    """The T5 tokenizer: `google/umt5-xxl/` (official) or `tokenizer/` (diffusers), never from the network."""
    folder = layout.files["tokenizer"][0].parent
    with reading(folder, "tokenizer folder"):
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def empty(component: Component[M], layout: CheckpointLayout, task: TaskConfig) -> M:
    """The model with meta parameters, from its config: derived from the official files, or the diffusers one."""
    files = layout.files[component.key]
    if _official(layout):
        try:
            config = component.official_config(files, task)
        except _CONFIG_ERRORS as exc:
            raise _config_error(files[0], exc) from exc
    else:
        config = component.diffusers_config(files[0])
    return build_empty(lambda: component.build(config))


def weights(component: Component[Any], layout: CheckpointLayout) -> Weights:
    """(library_key, tensor) pairs, one tensor read at a time."""
    files = layout.files[component.key]
    if _official(layout):
        return _convert(component.official_format.tensors(files), component.official_keys.to_library)
    return _rekey(SAFETENSORS.tensors(files), component.diffusers_key)


def lazy_weights(component: Component[Any], layout: CheckpointLayout) -> LazyWeights:
    """Library names -> tensors not read yet, for loading one FSDP shard per rank."""
    files = layout.files[component.key]
    if _official(layout):
        return renamed(component.official_format.lazy(files), component.official_keys.library_keys)
    return _rekey(SAFETENSORS.lazy(files), component.diffusers_key)


def key_rules(component: Component[M], model: M, layout: CheckpointLayout, dtype: torch.dtype) -> KeyRules:
    return KeyRules(
        what=component.what,
        source=weights_source(layout, component.key),
        keep_fp32=component.keep_fp32(model, dtype),
        tied=component.tied,
        ignore=ignored_unexpected(model),
    )


def load(
    component: Component[M],
    layout: CheckpointLayout,
    task: TaskConfig,
    dtype: torch.dtype,
    device: torch.device | str,
) -> M:
    """The whole model on `device`, every weight checked against it (see engine.loaders.assign)."""
    model = empty(component, layout, task)
    rules = key_rules(component, model, layout, dtype)
    assign_weights(model, weights(component, layout), dtype=dtype, device=device, **rules)
    return model


def weights_source(layout: CheckpointLayout, component: str) -> str:
    """How error messages name a component's weight files."""
    files = [p for p in layout.files[component] if not p.name.endswith(".json")]
    if len(files) == 1:
        return str(files[0])
    return f"{files[0].parent} ({len(files)} files)"
