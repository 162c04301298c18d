"""How far bf16 sampling lands from fp32: the official recipe (fp32 islands) against a whole-bf16-autocast forward.

For the `tiny` and `medium` presets of the embedded model, one conditioning (encoders in fp32) and one noise
are sampled three times with the same scheduler on the CPU:
- fp32: the DiT in float32, no autocast (the reference);
- recipe: `--dtype bf16` as the engine runs it: bf16 DiT under CPU bf16 autocast with the fp32 islands
  (engine.precision), the CLIP features rounded to fp16 as the fp16 CLIP gives them, then widened;
- all-bf16 forward: the same bf16 DiT under bf16 autocast without the islands, the CLIP features rounded to
  bf16 (what the engine did before issue 17).
Prints, per preset, the distance of each bf16 run's final latent from the fp32 one, side by side.

    .venv/bin/python bench/precision.py [--steps 20] [--seeds 3] [--presets tiny,medium]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import conditioning as C  # noqa: E402
from engine import loaders  # noqa: E402
from engine.checks import check_checkpoint  # noqa: E402
from engine.loaders import TRANSFORMER  # noqa: E402
from engine.precision import keep_fp32_islands  # noqa: E402
from engine.sampler import Conditioning, denoise  # noqa: E402
from engine.schedulers import make_scheduler  # noqa: E402
from engine.tiny import write_tiny_checkpoint  # noqa: E402
from tests.functional.engine_helpers import draw_frame  # noqa: E402
from tests.functional.test_engine_parity import TASK, build_pipeline  # noqa: E402

SIZES = {"tiny": (64, 64), "medium": (128, 128)}
FRAMES = 17


def conditioning(preset: str, workdir: Path) -> tuple[Path, Conditioning, tuple[int, int]]:
    ckpt = write_tiny_checkpoint(workdir / preset, layout="official", preset=preset)
    pipeline = build_pipeline(ckpt)  # fp32 encoders on the CPU
    m = pipeline.models
    width, height = SIZES[preset]
    images = [
        draw_frame(workdir / f"{preset}-{n}.png", (width, height), y, hue)
        for n, y, hue in (("a", 0.8, 0), ("b", 0.2, 60))
    ]
    first, last = (C.image_to_tensor(C.load_rgb(str(p))) for p in images)
    lat_h, lat_w = height // 8, width // 8
    with torch.no_grad():
        ctx = C.encode_text(m.tokenizer, m.text_encoder, ["a bird", TASK.neg_prompt], TASK.text_len, pipeline.device)
        pixels = C.clip_pixels([first, last], m.image_encoder.config.image_size)
        image_embeds = m.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        video = C.condition_video(first, last, FRAMES, height, width)
        condition = torch.cat([C.frame_mask(FRAMES, lat_h, lat_w), pipeline._vae_encode(video)])
    return ckpt, Conditioning(condition, ctx[0:1], ctx[1:2], image_embeds), (lat_h, lat_w)


def sample(
    model: torch.nn.Module, cond: Conditioning, noise: torch.Tensor, steps: int, amp: torch.dtype | None
) -> torch.Tensor:
    scheduler, timesteps = make_scheduler("unipc", steps, 16.0)
    return denoise(model, noise, cond, scheduler, timesteps, 5.0, cfg_batch=True, autocast_dtype=amp)


def rounded(cond: Conditioning, text: torch.dtype, clip: torch.dtype) -> Conditioning:
    """The conditioning as bf16 T5 and a CLIP in `clip` would hand it over."""
    return Conditioning(
        cond.condition, cond.context.to(text), cond.context_null.to(text), cond.image_embeds.to(clip).float()
    )


def distance(run: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max |a - b| / max |b|, rms(a - b) / rms(b))."""
    diff = (run - reference).double()
    ref = reference.double()
    return float(diff.abs().max() / ref.abs().max()), float(diff.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


def measure(preset: str, steps: int, seeds: int, workdir: Path) -> dict[str, list[tuple[float, float]]]:
    ckpt, cond, (lat_h, lat_w) = conditioning(preset, workdir)
    layout = check_checkpoint(ckpt, TASK)
    cpu = torch.device("cpu")
    fp32 = loaders.load(TRANSFORMER, layout, TASK, torch.float32, cpu)
    recipe = keep_fp32_islands(loaders.load(TRANSFORMER, layout, TASK, torch.bfloat16, cpu))
    plain = loaders.load(TRANSFORMER, layout, TASK, torch.bfloat16, cpu)
    bf16 = torch.bfloat16
    out: dict[str, list[tuple[float, float]]] = {"recipe": [], "all-bf16": []}
    for seed in range(seeds):
        noise = torch.randn(16, C.latent_frames(FRAMES), lat_h, lat_w, generator=torch.Generator().manual_seed(seed))
        reference = sample(fp32, cond, noise, steps, None)
        out["recipe"].append(
            distance(sample(recipe, rounded(cond, bf16, torch.float16), noise, steps, bf16), reference)
        )
        out["all-bf16"].append(distance(sample(plain, rounded(cond, bf16, bf16), noise, steps, bf16), reference))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--presets", default="tiny,medium", help="comma-separated, of: " + ", ".join(SIZES))
    args = parser.parse_args()
    print(f"final latent vs fp32, {args.steps} UniPC steps, guide 5.0, {FRAMES} frames, mean over {args.seeds} seeds")
    heads = ("recipe max", "recipe rms", "all-bf16 max", "all-bf16 rms", "rms ratio")
    print(f"{'preset':<8} {'size':<8} " + " ".join(f"{h:>12}" for h in heads))
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            runs = measure(preset, args.steps, args.seeds, Path(tmp))
            mean = {k: [sum(v[i] for v in rows) / len(rows) for i in (0, 1)] for k, rows in runs.items()}
            size = "*".join(str(v) for v in SIZES[preset])
            cells = [*mean["recipe"], *mean["all-bf16"]]
            ratio = mean["all-bf16"][1] / mean["recipe"][1]
            print(f"{preset:<8} {size:<8} " + " ".join(f"{c:>12.2e}" for c in cells) + f" {ratio:>12.2f}")


if __name__ == "__main__":
    main()
