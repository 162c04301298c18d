"""Task configurations: defaults, allowed sizes and fixed architecture facts (torch-free).

`flf2v-14B` follows the official Wan2.1 configuration for first-last-frame-to-video. `flf2v-tiny` is the
embedded random-weight model of the same architecture at toy sizes, used by the demo and the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The official default negative prompt for flf2v: the i2v prefix, the flf2v prefix and the shared base,
# in the order the official configuration composes them. It is model input, so it must match exactly.
_SHARED_NEG_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
FLF2V_NEG_PROMPT = "镜头切换，" + "镜头晃动，" + _SHARED_NEG_PROMPT

OFFICIAL_SIZES: tuple[str, ...] = ("1280*720", "720*1280", "832*480", "480*832")


@dataclass(frozen=True)
class ClipVisionArch:
    """What the official CLIP .pth cannot tell us by its tensor shapes."""

    num_heads: int
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class TaskConfig:
    name: str
    # None means: any width*height that are multiples of `size_multiple`, within `max_side`.
    sizes: tuple[str, ...] | None
    default_size: str
    frame_num: int
    sample_steps: int
    sample_shift: float
    sample_guide_scale: float
    sample_fps: int = 16
    text_len: int = 512
    vae_stride: tuple[int, int, int] = (4, 8, 8)
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_train_timesteps: int = 1000
    # Expected DiT head count; ulysses_size must divide it. The engine re-checks against the loaded model.
    num_heads: int = 40
    neg_prompt: str = FLF2V_NEG_PROMPT
    # Precision on GPU, as the official code chooses it. Everything is fp32 on CPU.
    param_dtype: str = "bfloat16"
    t5_dtype: str = "bfloat16"
    clip_dtype: str = "float16"
    clip_vision: ClipVisionArch = field(default_factory=lambda: ClipVisionArch(num_heads=16))
    # File names of the official checkpoint layout.
    t5_checkpoint: str = "models_t5_umt5-xxl-enc-bf16.pth"
    t5_tokenizer: str = "google/umt5-xxl"
    clip_checkpoint: str = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    clip_tokenizer: str = "xlm-roberta-large"
    vae_checkpoint: str = "Wan2.1_VAE.pth"
    size_multiple: int = 16
    max_side: int = 2048

    def max_area(self, size: str) -> int:
        width, height = parse_size(size)
        return width * height


TASKS: dict[str, TaskConfig] = {
    "flf2v-14B": TaskConfig(
        name="flf2v-14B",
        sizes=OFFICIAL_SIZES,
        default_size="1280*720",
        frame_num=81,
        sample_steps=50,
        sample_shift=16.0,
        sample_guide_scale=5.0,
        num_heads=40,
    ),
    "flf2v-tiny": TaskConfig(
        name="flf2v-tiny",
        sizes=None,
        default_size="64*64",
        frame_num=9,
        sample_steps=8,
        sample_shift=16.0,
        sample_guide_scale=5.0,
        num_heads=4,
        clip_vision=ClipVisionArch(num_heads=2),
        max_side=512,
    ),
}

SOLVERS: tuple[str, ...] = ("unipc", "dpm++")
# Attention kernels (engine.attention): auto picks one; "sage" is 8-bit, near-lossless, and only ever opt-in.
ATTENTION_CHOICES: tuple[str, ...] = ("auto", "sdpa", "math", "flash", "efficient", "cudnn", "flash_attn", "sage")
SHIFT_RANGE = (0.0, 100.0)  # exclusive low, inclusive high
GUIDE_SCALE_RANGE = (0.0, 50.0)  # inclusive both


def parse_size(size: str) -> tuple[int, int]:
    """'1280*720' -> (1280, 720), that is (width, height), as the official flag means it."""
    # ASCII digits only, and no spaces: the text is stored and passed on as given, so "64\n*48" or other
    # scripts' digits (which int() would take) must not get through as a size.
    match = re.fullmatch(r"([0-9]+)[*xX]([0-9]+)", size)
    if match is None:
        raise ValueError(f"size {size!r} is not of the form WIDTH*HEIGHT, for example 1280*720")
    return int(match[1]), int(match[2])


def size_problem(task: TaskConfig, size: str) -> str | None:
    """Why `size` is not allowed for `task`, or None when it is."""
    try:
        width, height = parse_size(size)
    except ValueError as exc:
        return str(exc)
    if task.sizes is not None:
        if size not in task.sizes:
            return f"size {size} is not supported by {task.name}; supported sizes are {', '.join(task.sizes)}"
        return None
    m = task.size_multiple
    if width % m or height % m or not (m <= width <= task.max_side and m <= height <= task.max_side):
        return (
            f"size {size} is not allowed for {task.name}: width and height must be multiples of {m} "
            f"between {m} and {task.max_side}"
        )
    return None


def frame_num_problem(frame_num: int) -> str | None:
    if frame_num < 5 or (frame_num - 1) % 4:
        return f"frame_num {frame_num} must be 4n+1 and at least 5 (for example 81)"
    return None


def latent_grid(task: TaskConfig, size: str, first_frame_hw: tuple[int, int]) -> tuple[int, int]:
    """The latent height and width, from max_area and the first frame's aspect ratio (official rounding)."""
    max_area = task.max_area(size)
    height, width = first_frame_hw
    aspect = height / width
    stride_h, stride_w = task.vae_stride[1], task.vae_stride[2]
    patch_h, patch_w = task.patch_size[1], task.patch_size[2]
    lat_h = round((max_area * aspect) ** 0.5 // stride_h // patch_h * patch_h)
    lat_w = round((max_area / aspect) ** 0.5 // stride_w // patch_w * patch_w)
    return int(lat_h), int(lat_w)
