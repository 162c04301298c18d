"""Which attention kernel the DiT runs (`--attn`), chosen explicitly per device, through diffusers' own
attention dispatch (`set_attention_backend`), so no attention code is ours.

`auto` on CUDA takes the fastest lossless kernel that is present and runs on this card, in this order: the
flash-attn package (FlashAttention-3 on Hopper when `flash_attn_interface` imports, else FlashAttention-2),
then SDPA's cuDNN backend (Hopper and later), then SDPA's flash backend (Ampere and later), then PyTorch's
own pick. Each candidate is tried once on a small bf16 problem before it is chosen, so a kernel that imports
but does not run on this card is passed over. On the CPU `auto` keeps PyTorch's own SDPA, the path the
CPU tests verify. `sage` (SageAttention, 8-bit) is near-lossless, never picked by `auto`, and recorded in
the video's recipe when asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from engine.errors import BadInputError

log = logging.getLogger("flf2v.engine")

AUTO = "auto"
SDPA = "sdpa"
# --attn choice -> diffusers' AttentionBackendName value. flash_attn is resolved to FA3 or FA2 (`_backend`).
DIFFUSERS_BACKENDS: dict[str, str] = {
    SDPA: "native",
    "math": "_native_math",
    "flash": "_native_flash",
    "efficient": "_native_efficient",
    "cudnn": "_native_cudnn",
    "flash_attn": "flash",
    "sage": "sage",
}
CPU_KERNELS = (SDPA, "math")  # SDPA's other backends and the packages are CUDA-only
NEAR_LOSSLESS = ("sage",)  # 8-bit: never the default, always named in the recipe


@dataclass(frozen=True)
class CardFeatures:
    """What `auto` decides on: the card's compute capability and which kernels import."""

    capability: tuple[int, int]
    flash_attn: bool  # the flash-attn package (FlashAttention-2) imports at a usable version
    flash_attn_3: bool  # flash_attn_interface (FlashAttention-3, Hopper) imports
    cudnn: bool  # cuDNN is available to SDPA


@dataclass(frozen=True)
class Kernel:
    """The resolved choice: `name` is an --attn value (what the recipe records), `backend` diffusers' name."""

    name: str
    backend: str

    @property
    def lossless(self) -> bool:
        return self.name not in NEAR_LOSSLESS

    def describe(self) -> str:
        label = {"_flash_3": "flash_attn (FlashAttention-3)", "flash": "flash_attn (FlashAttention-2)"}
        return label.get(self.backend, f"{self.name} ({self.backend})")


def auto_candidates(card: CardFeatures) -> list[Kernel]:
    """The lossless kernels `auto` may take on this card, fastest first."""
    major = card.capability[0]
    found: list[Kernel] = []
    if card.flash_attn_3 and major == 9:
        found.append(Kernel("flash_attn", "_flash_3"))
    if card.flash_attn and major >= 8:
        found.append(Kernel("flash_attn", "flash"))
    if card.cudnn and major >= 9:
        found.append(Kernel("cudnn", DIFFUSERS_BACKENDS["cudnn"]))
    if major >= 8:
        found.append(Kernel("flash", DIFFUSERS_BACKENDS["flash"]))
    found.append(Kernel(SDPA, DIFFUSERS_BACKENDS[SDPA]))
    return found


def card_features(device: torch.device) -> CardFeatures:
    from diffusers.models import attention_dispatch as dispatch

    return CardFeatures(
        capability=torch.cuda.get_device_capability(device),
        flash_attn=bool(dispatch._CAN_USE_FLASH_ATTN),
        flash_attn_3=bool(dispatch._CAN_USE_FLASH_ATTN_3),
        cudnn=bool(torch.backends.cudnn.is_available()),
    )


def runs_here(kernel: Kernel, device: torch.device) -> bool:
    """Whether `kernel` computes a small bf16 attention on `device` without error."""
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    q = torch.randn(1, 256, 2, 128, device=device, dtype=torch.bfloat16)
    try:
        dispatch_attention_fn(q, q, q, backend=_backend_enum(kernel.backend))
        torch.cuda.synchronize(device)
    except Exception as exc:  # any failure means: not on this card
        log.info(f"Attention kernel {kernel.describe()} does not run here: {type(exc).__name__}: {exc}")
        return False
    return True


def _backend_enum(backend: str) -> object:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return AttentionBackendName(backend)


def resolve_attention(
    choice: str,
    device: torch.device,
    features: Callable[[torch.device], CardFeatures] = card_features,
    works: Callable[[Kernel, torch.device], bool] = runs_here,
) -> Kernel:
    """The kernel `--attn choice` means on `device`; one line of BadInputError when it cannot run there."""
    if choice not in (AUTO, *DIFFUSERS_BACKENDS):
        raise BadInputError(f"--attn {choice!r}: choose one of auto, {', '.join(DIFFUSERS_BACKENDS)}", field="attn")
    if device.type != "cuda":
        if choice == AUTO:
            return Kernel(SDPA, DIFFUSERS_BACKENDS[SDPA])
        if choice not in CPU_KERNELS:
            raise BadInputError(
                f"--attn {choice} runs on CUDA only; on the CPU use auto, {' or '.join(CPU_KERNELS)}", field="attn"
            )
        return Kernel(choice, DIFFUSERS_BACKENDS[choice])
    card = features(device)
    if choice == AUTO:
        for kernel in auto_candidates(card):
            if kernel.name == SDPA or works(kernel, device):
                return kernel
    if choice == "flash_attn":
        kernels = [k for k in auto_candidates(card) if k.name == "flash_attn"]
        kernel = next((k for k in kernels if works(k, device)), None)
        if kernel is None:
            raise BadInputError(
                "--attn flash_attn: the flash-attn package does not import or does not run on this card "
                f"(compute capability {card.capability[0]}.{card.capability[1]}); install it or use --attn auto",
                field="attn",
            )
        return kernel
    kernel = Kernel(choice, DIFFUSERS_BACKENDS[choice])
    if not works(kernel, device):
        raise BadInputError(
            f"--attn {choice} does not run on this card or is not installed (see the rank log); use --attn auto",
            field="attn",
        )
    return kernel


def apply_attention(transformer: nn.Module, kernel: Kernel) -> None:
    """Every attention of the DiT (our Ulysses processors too) runs `kernel`."""
    if kernel.name == SDPA:
        return  # diffusers' default: nothing to set, exactly the path the CPU tests verify
    # Set on each processor, as set_attention_backend does, but without its process-wide "active backend",
    # which would reach every other model of the process.
    backend = _backend_enum(kernel.backend)
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            processor._attention_backend = backend
    if not kernel.lossless:
        log.warning(f"Attention kernel {kernel.describe()} is 8-bit: near-lossless, not the official numerics")
