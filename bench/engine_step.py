"""Seconds per sampling step: our loop against diffusers' WanImageToVideoPipeline, side by side.

Both run the same components (loaded once), the same conditioning and the same noise on the CPU, for
the `tiny` and `medium` presets of the embedded model. Prints a table and the ratio ours / diffusers.

    .venv/bin/python bench/engine_step.py [--steps 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import conditioning as C  # noqa: E402
from engine.sampler import Conditioning, denoise  # noqa: E402
from engine.schedulers import make_scheduler  # noqa: E402
from engine.tiny import write_tiny_checkpoint  # noqa: E402
from tests.functional.engine_helpers import draw_frame  # noqa: E402
from tests.functional.test_engine_parity import (  # noqa: E402
    GivenImageEmbedsPipeline,
    OfficialSigmasUniPC,
    build_pipeline,
)

SIZES = {"tiny": "64*64", "medium": "128*128"}


def measure(preset: str, steps: int, repeats: int, workdir: Path) -> tuple[float, float]:
    ckpt = write_tiny_checkpoint(workdir / preset, layout="diffusers", preset=preset)
    ours = build_pipeline(ckpt)
    m = ours.models
    width, height = (int(v) for v in SIZES[preset].split("*"))
    frames = [
        C.load_rgb(str(draw_frame(workdir / f"{preset}-{n}.png", (width, height), y, hue)))
        for n, y, hue in (("a", 0.8, 0), ("b", 0.2, 60))
    ]
    first, last = (C.image_to_tensor(f) for f in frames)
    lat_h, lat_w = height // 8, width // 8
    with torch.no_grad():
        ctx = C.encode_text(m.tokenizer, m.text_encoder, ["a bird", ours.task.neg_prompt], 512, ours.device)
        pixels = C.clip_pixels([first, last], m.image_encoder.config.image_size)
        image_embeds = m.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        condition = torch.cat(
            [C.frame_mask(9, lat_h, lat_w), ours._vae_encode(C.condition_video(first, last, 9, height, width))]
        )
    noise = torch.randn(16, 3, lat_h, lat_w, generator=torch.Generator().manual_seed(0))
    cond = Conditioning(condition, ctx[0:1], ctx[1:2], image_embeds)
    reference = GivenImageEmbedsPipeline(
        tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
        scheduler=OfficialSigmasUniPC(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=16.0),
        image_encoder=m.image_encoder, transformer=m.transformer,
    )  # fmt: skip
    reference.given_image_embeds = image_embeds
    reference.set_progress_bar_config(disable=True)

    def run_ours() -> list[float]:
        times: list[float] = []
        scheduler, timesteps = make_scheduler("unipc", steps, 16.0)
        denoise(m.transformer, noise, cond, scheduler, timesteps, 5.0, cfg_batch=True,
                on_step=lambda i, n, s, lat: times.append(s))  # fmt: skip
        return times

    def run_diffusers() -> list[float]:
        stamps = [time.perf_counter()]

        def tick(pipe, i, t, kwargs):
            stamps.append(time.perf_counter())
            return {}

        # The first stamp precedes prompt handling and the VAE condition, so its interval is dropped below.
        reference(
            image=frames[0], last_image=frames[1], prompt_embeds=ctx[0:1], negative_prompt_embeds=ctx[1:2],
            height=height, width=width, num_frames=9, num_inference_steps=steps, guidance_scale=5.0,
            latents=noise[None].clone(), output_type="latent", callback_on_step_end=tick,
        )  # fmt: skip
        return [b - a for a, b in itertools.pairwise(stamps[1:])]

    ours_times, theirs_times = [], []
    for _ in range(repeats):  # interleaved so background load hits both alike
        ours_times += run_ours()[1:]
        theirs_times += run_diffusers()
    return statistics.median(ours_times), statistics.median(theirs_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("tiny", "medium"):
            ours, theirs = measure(preset, args.steps, args.repeats, Path(tmp))
            rows.append((preset, SIZES[preset], ours, theirs))
    print(f"CPU, {torch.get_num_threads()} threads, 9 frames, batched CFG (ours) vs two passes (diffusers)")
    print(f"{'preset':<8} {'size':<8} {'ours s/step':>12} {'diffusers s/step':>17} {'ours/diffusers':>15}")
    for preset, size, ours, theirs in rows:
        print(f"{preset:<8} {size:<8} {ours:>12.4f} {theirs:>17.4f} {ours / theirs:>15.2f}")


if __name__ == "__main__":
    main()
