"""The models bench/gpu_proof.py times, built from config with random weights (no files are read): the real
FLF2V-14B geometry on a GPU, the embedded tiny one for `--dry-run` on the CPU, and the FLOP model that turns
seconds into TFLOP/s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import UMT5EncoderModel

from engine.loaders.assign import diffusers_keep_fp32
from engine.sampler import Conditioning
from engine.tasks import TASKS, TaskConfig
from engine.tiny.presets import PRESETS, Preset, t5_config, transformer_config, vae_config

# Wan2.1 FLF2V-14B: DiT dim 5120, 40 heads, 40 layers, ffn 13824; umT5-XXL (24 layers, d_model 4096, 64 heads,
# d_ff 10240, 256,384 tokens); CLIP ViT-H/14 at 224 px (1280 wide, 257 tokens per frame); the VAE at base 96.
WAN_14B = Preset(
    "flf2v-14B", dit_dim=5120, dit_ffn=13824, dit_layers=40, t5_dim=4096, t5_heads=64, t5_ff=10240, t5_layers=24,
    clip_dim=1280, clip_layers=32, clip_patch=14, clip_image=224, vae_base_dim=96,
)  # fmt: skip
T5_XXL_VOCAB = 256384
# Wan2.2's published single-H100 figure for I2V-A14B at 720p, the same DiT geometry: 1055.9 s for 40 steps.
WAN22_SECONDS_PER_STEP = 1055.9 / 40


@dataclass(frozen=True)
class Geometry:
    """What one proof run builds: the preset, its task, the video size and the dtypes on the device."""

    preset: Preset
    task: TaskConfig
    width: int
    height: int
    frames: int
    dit_dtype: torch.dtype
    t5_dtype: torch.dtype
    vae_dtype: torch.dtype = torch.float32

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        stride_t, stride_h, stride_w = self.task.vae_stride
        return 16, (self.frames - 1) // stride_t + 1, self.height // stride_h, self.width // stride_w

    @property
    def tokens(self) -> int:
        _, t, h, w = self.latent_shape
        pt, ph, pw = self.task.patch_size
        return (t // pt) * (h // ph) * (w // pw)

    @property
    def image_tokens(self) -> int:
        return 2 * ((self.preset.clip_image // self.preset.clip_patch) ** 2 + 1)  # the first and the last frame


def real_geometry() -> Geometry:
    return Geometry(WAN_14B, TASKS["flf2v-14B"], 1280, 720, 81, torch.bfloat16, torch.bfloat16)


def dry_geometry() -> Geometry:
    return Geometry(PRESETS["tiny"], TASKS["flf2v-tiny"], 64, 64, 9, torch.float32, torch.float32)


def forward_flops(g: Geometry) -> float:
    """FLOPs of one DiT forward (2 per multiply-add), per token and block: self-attention's four projections
    (4 d^2) and its scores and weighted sum over all N tokens (2 N d), cross-attention's query and output
    projections (2 d^2) and its attention to the text and image tokens (2 C d), the FFN (2 d f). Key and value
    projections of the context, the embeddings and the head are below 0.1% and left out. For the 14B DiT at
    75,600 tokens this is 6.55 PFLOP, 13.1 PFLOP for a step with both guidance branches."""
    d, f, n = g.preset.dit_dim, g.preset.dit_ffn, g.tokens
    context = g.task.text_len + g.image_tokens
    macs_per_token = 4 * d * d + 2 * n * d + 2 * d * d + 2 * context * d + 2 * d * f
    return 2.0 * macs_per_token * n * g.preset.dit_layers


def cfg_step_flops(g: Geometry) -> float:
    return 2 * forward_flops(g)


@contextmanager
def built_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Modules made inside are allocated and initialised straight on `device` in `dtype`: 28 GB of random DiT
    weights take seconds on a GPU and never pass through host memory."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _keep_fp32(model: torch.nn.Module) -> None:
    """diffusers' `_keep_in_fp32_modules` in float32, as the engine's loaders leave them under bf16."""
    keep = diffusers_keep_fp32(model)
    for name, param in model.named_parameters():
        if keep(name):
            param.data = param.data.float()


@torch.no_grad()
def build_dit(g: Geometry, device: torch.device) -> WanTransformer3DModel:
    torch.manual_seed(0)
    with built_on(device, g.dit_dtype):
        model = WanTransformer3DModel.from_config(transformer_config(g.preset, g.task))
    _keep_fp32(model)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def build_t5(g: Geometry, device: torch.device) -> UMT5EncoderModel:
    vocab = T5_XXL_VOCAB if g.preset is WAN_14B else 256
    torch.manual_seed(0)
    with built_on(device, g.t5_dtype):
        model = UMT5EncoderModel(t5_config(g.preset, vocab))
    return model.eval().requires_grad_(False)


@torch.no_grad()
def build_vae(g: Geometry, device: torch.device) -> AutoencoderKLWan:
    torch.manual_seed(0)
    with built_on(device, g.vae_dtype):
        model = AutoencoderKLWan(**vae_config(g.preset))
    return model.eval().requires_grad_(False)


def dit_inputs(g: Geometry, device: torch.device) -> tuple[torch.Tensor, Conditioning]:
    """Noise and a conditioning of the real shapes (fp32 latents; context and CLIP tokens in the DiT's dtype,
    as the pipeline hands them over)."""
    gen = torch.Generator(device=device).manual_seed(0)
    _, t, h, w = g.latent_shape

    def rand(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    cond = Conditioning(
        condition=rand(20, t, h, w),
        context=rand(1, g.task.text_len, g.preset.t5_dim, dtype=g.dit_dtype),
        context_null=rand(1, g.task.text_len, g.preset.t5_dim, dtype=g.dit_dtype),
        image_embeds=rand(2, g.image_tokens // 2, g.preset.clip_dim, dtype=g.dit_dtype),
    )
    return rand(16, t, h, w), cond
