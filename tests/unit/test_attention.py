"""`--attn`: which kernel each choice means on each device, and (on CUDA) that every kernel present computes
what SDPA's math path computes, within bf16's tolerance."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry, dispatch_attention_fn

from engine.attention import (
    DIFFUSERS_BACKENDS,
    CardFeatures,
    Kernel,
    apply_attention,
    auto_candidates,
    resolve_attention,
)
from engine.errors import BadInputError
from engine.parallel.ulysses import SequenceSplit, UlyssesSelfAttention, enable_ulysses
from engine.tasks import ATTENTION_CHOICES, TASKS
from engine.tiny.presets import PRESETS, transformer_config

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
HOPPER_ALL = CardFeatures((9, 0), flash_attn=True, flash_attn_3=True, cudnn=True)


def _tiny() -> WanTransformer3DModel:
    torch.manual_seed(0)
    return WanTransformer3DModel.from_config(transformer_config(PRESETS["tiny"], TASKS["flf2v-tiny"])).eval()


def test_every_choice_of_the_flag_is_a_kernel_or_auto():
    assert set(ATTENTION_CHOICES) == {"auto", *DIFFUSERS_BACKENDS}
    assert {k.value for k in AttentionBackendName} >= {*DIFFUSERS_BACKENDS.values(), "_flash_3"}


def test_on_the_cpu_auto_keeps_pytorch_sdpa_and_math_can_be_asked_for():
    assert resolve_attention("auto", CPU) == Kernel("sdpa", "native")
    assert resolve_attention("math", CPU) == Kernel("math", "_native_math")
    for choice in ("flash", "efficient", "cudnn", "flash_attn", "sage"):
        with pytest.raises(BadInputError) as info:
            resolve_attention(choice, CPU)
        assert f"--attn {choice} runs on CUDA only" in info.value.message and info.value.field == "attn"


def _pick(card: CardFeatures, broken: tuple[str, ...] = (), choice: str = "auto") -> Kernel:
    return resolve_attention(choice, GPU, features=lambda _d: card, works=lambda k, _d: k.backend not in broken)


def test_auto_on_cuda_takes_the_fastest_lossless_kernel_that_runs_on_the_card():
    assert _pick(HOPPER_ALL) == Kernel("flash_attn", "_flash_3")
    assert _pick(HOPPER_ALL, broken=("_flash_3",)) == Kernel("flash_attn", "flash")  # FA3 imports, does not run
    no_packages = CardFeatures((9, 0), flash_attn=False, flash_attn_3=False, cudnn=True)
    assert _pick(no_packages) == Kernel("cudnn", "_native_cudnn")
    assert _pick(no_packages, broken=("_native_cudnn",)) == Kernel("flash", "_native_flash")
    ampere = CardFeatures((8, 0), flash_attn=True, flash_attn_3=True, cudnn=True)  # FA3 is Hopper-only
    assert _pick(ampere) == Kernel("flash_attn", "flash")
    assert _pick(CardFeatures((8, 6), False, False, True)) == Kernel("flash", "_native_flash")
    assert _pick(CardFeatures((7, 5), False, False, True)) == Kernel("sdpa", "native")  # PyTorch's own pick
    # The 8-bit kernel is never chosen for the user.
    assert all(k.lossless for k in auto_candidates(HOPPER_ALL)) and not Kernel("sage", "sage").lossless


def test_an_explicit_kernel_that_cannot_run_is_one_line_of_bad_input():
    none = CardFeatures((9, 0), flash_attn=False, flash_attn_3=False, cudnn=True)
    with pytest.raises(BadInputError, match="flash-attn package does not import or does not run on this card"):
        _pick(none, choice="flash_attn")
    with pytest.raises(BadInputError, match="--attn sage does not run on this card or is not installed"):
        _pick(none, broken=("sage",), choice="sage")
    assert _pick(none, choice="cudnn") == Kernel("cudnn", "_native_cudnn")


def test_the_kernel_reaches_every_attention_of_the_dit_and_nothing_else():
    model = _tiny()
    enable_ulysses(model, SequenceSplit(group=None, size=1, rank=0))
    before = _AttentionBackendRegistry.get_active_backend()
    apply_attention(model, Kernel("math", "_native_math"))
    processors = [b.attn1.processor for b in model.blocks] + [b.attn2.processor for b in model.blocks]
    assert any(isinstance(p, UlyssesSelfAttention) for p in processors)
    assert {p._attention_backend for p in processors} == {AttentionBackendName._NATIVE_MATH}
    assert _AttentionBackendRegistry.get_active_backend() == before  # no process-wide change


@torch.no_grad()
def test_math_on_the_cpu_gives_the_default_path_within_fp32():
    model = _tiny()
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, 512, PRESETS["tiny"].t5_dim, generator=g)
    args = (torch.randn(1, 36, 3, 8, 8, generator=g), torch.tensor([700.0]), text, torch.randn(2, 5, 32, generator=g))
    default = model(*args, return_dict=False)[0]
    apply_attention(model, resolve_attention("math", CPU))
    math = model(*args, return_dict=False)[0]
    assert ((math - default).abs().max() / default.abs().max()).item() <= 1e-6


def _present_cuda_kernels() -> list[Kernel]:
    if not torch.cuda.is_available():
        return []
    from engine.attention import card_features, runs_here

    card = card_features(GPU)
    kernels = [*auto_candidates(card), *(Kernel(n, DIFFUSERS_BACKENDS[n]) for n in ("efficient", "sage"))]
    return [k for k in dict.fromkeys(kernels) if runs_here(k, GPU)]


@pytest.mark.cuda
@pytest.mark.parametrize("tokens", [4096, 3000], ids=["4096 tokens", "3000 tokens (no power of 2)"])
def test_each_cuda_kernel_present_equals_sdpa_math_within_bf16(tokens):
    g = torch.Generator(device=GPU).manual_seed(0)
    q, k, v = (torch.randn(1, tokens, 8, 128, device=GPU, dtype=torch.bfloat16, generator=g) for _ in range(3))
    reference = dispatch_attention_fn(q.float(), k.float(), v.float(), backend=AttentionBackendName._NATIVE_MATH)
    kernels = _present_cuda_kernels()
    assert any(kernel.name != "sdpa" for kernel in kernels), "no explicit kernel runs on this card"
    for kernel in kernels:
        out = dispatch_attention_fn(q, k, v, backend=AttentionBackendName(kernel.backend)).float()
        error = ((out - reference).abs().max() / reference.abs().max()).item()
        limit = 5e-2 if not kernel.lossless else 1e-2  # bf16 has 8 bits of mantissa; sage 8-bit is looser
        assert error <= limit, (kernel, error)


@pytest.mark.cuda
@torch.no_grad()
def test_on_cuda_the_dit_with_the_auto_kernel_equals_sdpa_math_within_bf16():
    model = _tiny().to(GPU)
    g = torch.Generator(device=GPU).manual_seed(1)
    x = torch.randn(1, 36, 3, 16, 16, device=GPU, generator=g)
    text = torch.randn(1, 512, PRESETS["tiny"].t5_dim, device=GPU, generator=g)
    image = torch.randn(2, 5, PRESETS["tiny"].clip_dim, device=GPU, generator=g)  # the two frames
    t = torch.tensor([700.0], device=GPU)
    outs = {}
    for choice in ("math", "auto"):
        apply_attention(model, resolve_attention(choice, GPU))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs[choice] = model(x, t, text, image, return_dict=False)[0].float()
    error = ((outs["auto"] - outs["math"]).abs().max() / outs["math"].abs().max()).item()
    assert error <= 2e-2, error
