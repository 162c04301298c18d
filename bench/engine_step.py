"""Seconds per sampling step: our loop against diffusers' WanImageToVideoPipeline, side by side.

Both run the same components (loaded once), the same conditioning and the same noise on the CPU, for
the `tiny` and `medium` presets of the embedded model. Prints a table and the ratio ours / diffusers.

Then CFG-parallel (--cfg_size 2: two gloo ranks of one thread, one guidance branch each, predictions swapped
every step) against CFG batched in one rank of two threads, the same cores, interleaved run by run. On a CPU
no speed-up is expected: the rows show what the exchange costs.

    .venv/bin/python bench/engine_step.py [--steps 6] [--repeats 3] [--only cfg]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from diffusers import WanTransformer3DModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import conditioning as C  # noqa: E402
from engine.parallel import cfg_mesh, cfg_split  # noqa: E402
from engine.sampler import Conditioning, denoise  # noqa: E402
from engine.schedulers import make_scheduler  # noqa: E402
from engine.tasks import TASKS  # noqa: E402
from engine.tiny import write_tiny_checkpoint  # noqa: E402
from engine.tiny.presets import PRESETS, transformer_config  # noqa: E402
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


def _random_dit(preset: str) -> tuple[WanTransformer3DModel, torch.Tensor, Conditioning]:
    """The preset's DiT with random weights and a random conditioning, the same in every process (seeded)."""
    torch.manual_seed(0)
    p = PRESETS[preset]
    model = WanTransformer3DModel.from_config(transformer_config(p, TASKS["flf2v-tiny"])).eval()
    width, height = (int(v) // 8 for v in SIZES[preset].split("*"))
    g = torch.Generator().manual_seed(1)
    cond = Conditioning(
        condition=torch.randn(20, 3, height, width, generator=g),
        context=torch.randn(1, 512, p.t5_dim, generator=g),
        context_null=torch.randn(1, 512, p.t5_dim, generator=g),
        image_embeds=torch.randn(2, (p.clip_image // p.clip_patch) ** 2 + 1, p.clip_dim, generator=g),
    )
    return model, torch.randn(16, 3, height, width, generator=g), cond


def _median_step(preset: str, steps: int, **kwargs) -> float:
    model, noise, cond = _random_dit(preset)
    times: list[float] = []
    scheduler, timesteps = make_scheduler("unipc", steps, 16.0)
    denoise(model, noise, cond, scheduler, timesteps, 5.0, on_step=lambda i, n, s, lat: times.append(s), **kwargs)
    return statistics.median(times[1:])  # the first step pays one-off costs


def _cfg_parallel_rank(rank: int, preset: str, steps: int, store: str, result: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        split = cfg_split(cfg_mesh(torch.device("cpu"), 2, 2))
        seconds = _median_step(preset, steps, cfg_split=split)
        if rank == 0:
            Path(result).write_text(str(seconds))
    finally:
        dist.destroy_process_group()


def measure_cfg_parallel(preset: str, steps: int, repeats: int, workdir: Path) -> tuple[float, float, float]:
    """Median s/step of CFG batched in one rank of 1 thread and of 2 threads, and of CFG-parallel on two ranks
    of 1 thread each (the same two cores as the 2-thread rank)."""
    one, two, parallel = [], [], []
    threads = torch.get_num_threads()
    for n in range(repeats):  # interleaved so background load hits all three alike
        for count, into in ((1, one), (2, two)):
            torch.set_num_threads(count)
            into.append(_median_step(preset, steps, cfg_batch=True))
        torch.set_num_threads(threads)
        store, result = workdir / f"store-{preset}-{n}", workdir / f"result-{preset}-{n}"
        mp.spawn(_cfg_parallel_rank, args=(preset, steps, str(store), str(result)), nprocs=2, join=True)
        parallel.append(float(result.read_text()))
    return statistics.median(one), statistics.median(two), statistics.median(parallel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("diffusers", "cfg"), help="only one of the two tables")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the spawned ranks set their own thread count
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "cfg":
            rows = []
            for preset in ("tiny", "medium"):
                ours, theirs = measure(preset, args.steps, args.repeats, Path(tmp))
                rows.append((preset, SIZES[preset], ours, theirs))
            print(f"CPU, {torch.get_num_threads()} threads, 9 frames, batched CFG (ours) vs two passes (diffusers)")
            print(f"{'preset':<8} {'size':<8} {'ours s/step':>12} {'diffusers s/step':>17} {'ours/diffusers':>15}")
            for preset, size, ours, theirs in rows:
                print(f"{preset:<8} {size:<8} {ours:>12.4f} {theirs:>17.4f} {ours / theirs:>15.2f}")
        if args.only != "diffusers":
            load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            print(f"CPU, 9 frames, {load}: CFG batched in 1 rank (1 or 2 threads) vs CFG-parallel on 2 gloo ranks "
                  "of 1 thread")  # fmt: skip
            print(f"{'preset':<8} {'size':<8} {'batched 1t':>11} {'batched 2t':>11} {'cfg-parallel 2x1t':>18} "
                  f"{'parallel/batched 2t':>20}")  # fmt: skip
            for preset in ("tiny", "medium"):
                one, two, parallel = measure_cfg_parallel(preset, args.steps, args.repeats, Path(tmp))
                print(f"{preset:<8} {SIZES[preset]:<8} {one:>11.4f} {two:>11.4f} {parallel:>18.4f} "
                      f"{parallel / two:>20.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
