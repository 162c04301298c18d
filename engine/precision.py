"""The precision recipe: which dtype each model computes in, and the DiT's float32 islands under bf16 autocast.

The official Wan2.1 DiT runs under bf16 autocast but keeps some regions in float32: the time embedding and
its projection (asserted float32), the modulation sums and the residual stream (`x = x + y * e` is float32
from the first block on), and the output head, so the velocity prediction is float32. The CLIP features
reach the image projection's LayerNorm in fp16 and are normalised in float32, never rounded to bf16.

diffusers' WanTransformer3DModel rounds each of these to the hidden states' dtype. Rather than fork its
classes, `keep_fp32_islands` makes the same model compute them as the official code does:
- the patch embedding's output (the residual stream) is made float32, so every `.type_as(hidden_states)`
  in the blocks and the output norm keeps float32, as the official residual does;
- the text context and the CLIP features enter the condition embedder as float32 (a lossless widening of the
  encoders' bf16/fp16 outputs): the time embedding is cast to the context's dtype there, and the image
  embedding's first LayerNorm then sees the fp16 features' own values;
- the time embedder, the time projection and the output projection run with autocast off, in float32 (bf16
  weights are widened, as the official `autocast(dtype=float32)` does).

Under --dtype fp32 all of this changes nothing: every tensor is float32 already.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.tasks import TaskConfig

# The marker left on a transformer whose islands are in place, so that installing twice is harmless.
_INSTALLED = "_flf2v_fp32_islands"


@dataclass(frozen=True)
class Precision:
    """`--dtype bf16` is the official GPU recipe (bf16 DiT and T5 under bf16 autocast, fp16 CLIP, fp32 VAE),
    on the CPU too with CPU autocast; `--dtype fp32` computes everything in float32."""

    dit: torch.dtype
    t5: torch.dtype
    clip: torch.dtype
    vae: torch.dtype = torch.float32

    @classmethod
    def of(cls, dtype: str, task: TaskConfig) -> Precision:
        """`dtype` resolved already (engine.cli_args.resolve_dtype): "bf16" or "fp32"."""
        if dtype == "fp32":
            return cls(torch.float32, torch.float32, torch.float32)
        return cls(getattr(torch, task.param_dtype), getattr(torch, task.t5_dtype), getattr(torch, task.clip_dtype))

    @property
    def autocast(self) -> torch.dtype | None:
        """The DiT forward's autocast dtype; None: no autocast (float32)."""
        return None if self.dit == torch.float32 else self.dit


def _autocast_off(tensor: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def _fp32_linear(linear: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    """The Linear's forward in float32 with autocast off; its weights widened where they are stored in bf16."""

    def forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.float() if self.bias is not None else None
        with _autocast_off(x):
            return F.linear(x.float(), self.weight.float(), bias)

    return types.MethodType(forward, linear)


def _autocast_off_forward(module: nn.Module) -> Callable[..., Any]:
    """The module's own forward with autocast off and float32 inputs (for modules whose weights are float32)."""
    inner = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        with _autocast_off(tensors[0]):
            return inner(*args, **kwargs)

    return forward


def _float_output(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def _float_conditions(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # condition_embedder(timestep, encoder_hidden_states, encoder_hidden_states_image, ...): the text context
    # (args[1]) and the CLIP features (args[2]) widened to float32.
    return tuple(
        a.float() if i in (1, 2) and isinstance(a, torch.Tensor) and a.is_floating_point() else a
        for i, a in enumerate(args)
    )


def keep_fp32_islands(transformer: nn.Module) -> nn.Module:
    """Make a diffusers WanTransformer3DModel keep the official float32 regions under autocast (see the module
    docstring). The module tree and its state dict are unchanged; installing twice is harmless."""
    if getattr(transformer, _INSTALLED, False):
        return transformer
    embedder = transformer.condition_embedder  # type: ignore[union-attr]
    transformer.patch_embedding.register_forward_hook(_float_output)  # type: ignore[union-attr]
    embedder.register_forward_pre_hook(_float_conditions)
    embedder.time_embedder.forward = _autocast_off_forward(embedder.time_embedder)
    embedder.time_proj.forward = _fp32_linear(embedder.time_proj)
    transformer.proj_out.forward = _fp32_linear(transformer.proj_out)  # type: ignore[union-attr]
    setattr(transformer, _INSTALLED, True)
    return transformer


# ---- checks (tests, bench/gpu_proof.py) ------------------------------------------------------------------
ISLAND_POINTS = ("time_embedding", "time_projection", "clip_features", "residual_stream", "velocity")


@contextmanager
def island_dtypes(transformer: nn.Module) -> Iterator[dict[str, set[torch.dtype]]]:
    """Record, while the block runs, the dtypes seen at each float32 point of the official recipe: the time
    embedding and its projection (the condition embedder's outputs), the CLIP features where the image
    embedding's LayerNorm takes them, the residual stream after every block, and the velocity prediction."""
    seen: dict[str, set[torch.dtype]] = {point: set() for point in ISLAND_POINTS}
    embedder = transformer.condition_embedder  # type: ignore[union-attr]

    def embedder_out(_m: nn.Module, _a: Any, out: tuple[torch.Tensor, ...]) -> None:
        seen["time_embedding"].add(out[0].dtype)
        seen["time_projection"].add(out[1].dtype)

    def clip_in(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["clip_features"].add(args[0].dtype)

    def block_out(_m: nn.Module, _a: Any, out: torch.Tensor) -> None:
        seen["residual_stream"].add(out.dtype)

    def head_out(_m: nn.Module, _a: Any, out: torch.Tensor) -> None:
        seen["velocity"].add(out.dtype)

    handles = [embedder.register_forward_hook(embedder_out), transformer.proj_out.register_forward_hook(head_out)]  # type: ignore[union-attr]
    if embedder.image_embedder is not None:
        handles.append(embedder.image_embedder.norm1.register_forward_pre_hook(clip_in))
    handles += [block.register_forward_hook(block_out) for block in transformer.blocks]  # type: ignore[union-attr]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def island_problems(seen: dict[str, set[torch.dtype]]) -> list[str]:
    """What `island_dtypes` recorded that is not float32 (or was never seen): [] when the recipe holds."""
    return [
        f"{point}: {sorted(str(d) for d in dtypes) or 'never reached'}"
        for point, dtypes in seen.items()
        if dtypes != {torch.float32}
    ]


@torch.no_grad()
def check_islands(transformer: nn.Module, autocast: torch.dtype, **inputs: Any) -> list[str]:
    """One forward of `transformer` on `inputs` (its keyword arguments) under `autocast` on the inputs' device,
    and what `island_problems` finds in it: [] when every official float32 point is float32 (tests/unit/
    test_precision.py on the CPU; bench/gpu_precision.py uses `island_dtypes` itself, to report the dtypes too)."""
    device = next(t for t in inputs.values() if isinstance(t, torch.Tensor)).device
    with torch.autocast(device_type=device.type, dtype=autocast), island_dtypes(transformer) as seen:
        transformer(**inputs, return_dict=False)
    return island_problems(seen)
