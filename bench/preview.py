"""What live latent previews cost a sampling step: the same generation with previews off, every 5 steps (the
queue's default) and every step, side by side, interleaved.

The figure is the denoise stage's wall time per step. It includes everything the previews add to that
stage: the latent-to-RGB projection on the sampling thread, the hand-off to the writer thread, that thread's
PNG encoding competing for the same cores, and the wait for the last PNG at the end of the stage. Fitting
the projection (a few tiny VAE encodes) happens once per job in encode_condition and is reported apart.
Previews are held to 2 % of the sampling time by a budget (engine/preview.py), which skips due previews
that would not fit; the table says how many were written per run against how many were due, and the largest
share of the sampling time that the budget itself counted against previews in any run.

    .venv/bin/python bench/preview.py [--steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import conditioning as C  # noqa: E402
from engine import pipeline as P  # noqa: E402
from engine.preview import LatentPreviewer, fit_projection  # noqa: E402
from engine.tiny import write_tiny_checkpoint  # noqa: E402
from tests.functional.engine_helpers import draw_frame  # noqa: E402
from tests.functional.test_engine_parity import build_pipeline, request  # noqa: E402

SETTINGS = (0, 5, 1)  # preview_every; 0 is off
SHARES: list[float] = []  # per run: what the budget charged the previews, as a share of the sampling it timed


class AccountedPreviewer(LatentPreviewer):
    """The engine's previewer, keeping its budget's final account (the figure held to 2 % by construction)."""

    def close(self) -> None:
        super().close()  # the writer's busy time, which the budget reads, now includes the last PNGs
        SHARES.append(self.budget.spent() / max(self.budget.sampling_seconds(), 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per generation (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="generations per setting (default 5)")
    parser.add_argument("--preset", default="medium", help="tiny-architecture preset: tiny or medium (default)")
    parser.add_argument("--size", default="128*128", help="WIDTH*HEIGHT (default 128*128)")
    parser.add_argument("--frames", type=int, default=17, help="frames, 4n+1 (default 17)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("*"))
    per_step: dict[int, list[float]] = {every: [] for every in SETTINGS}
    written: dict[int, list[int]] = {every: [] for every in SETTINGS}
    charged: dict[int, list[float]] = {every: [] for every in SETTINGS}
    P.LatentPreviewer = AccountedPreviewer  # type: ignore[misc]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipeline = build_pipeline(write_tiny_checkpoint(work / "ckpt", layout="diffusers", preset=args.preset))
        frames = tuple(
            C.load_rgb(str(draw_frame(work / f"{n}.png", (width, height), y, hue)))
            for n, y, hue in (("a", 0.8, 0), ("b", 0.2, 60))
        )
        started = time.perf_counter()
        fit_projection(pipeline._vae_encode, pipeline.task.vae_stride[1], pipeline.device)
        fit_seconds = time.perf_counter() - started
        for repeat in range(args.repeats):  # interleaved and rotated, so background load hits every setting alike
            shift = repeat % len(SETTINGS)
            for every in SETTINGS[shift:] + SETTINGS[:shift]:
                folder = work / f"previews-{every}"
                shutil.rmtree(folder, ignore_errors=True)
                req = request(frames, size=args.size, frame_num=args.frames, steps=args.steps,
                              preview_every=every, preview_dir=str(folder))  # fmt: skip
                pipeline.reporter.stage_seconds.clear()
                pipeline.generate(req)
                per_step[every].append(pipeline.reporter.stage_seconds["denoise"] / args.steps)
                written[every].append(len(list(folder.glob("step-*.png"))) if every else 0)
                if every:
                    charged[every].append(SHARES.pop())
    # The fastest run of each setting is the one least disturbed by other work on the machine; the median
    # is printed beside it so a disturbed run shows.
    base_min, base_median = min(per_step[0]), statistics.median(per_step[0])
    print(f"CPU, {torch.get_num_threads()} threads, preset {args.preset}, {args.size}, {args.frames} frames, "
          f"{args.steps} steps, {args.repeats} runs each")  # fmt: skip
    print(f"{'previews':<16} {'min s/step':>10} {'vs off':>7} {'median':>8} {'vs off':>7} {'written/due':>12} "
          f"{'charged':>8}")  # fmt: skip
    for every in SETTINGS:
        low, median = min(per_step[every]), statistics.median(per_step[every])
        label = "off" if every == 0 else f"every {every} step" + ("s" if every > 1 else "")
        due = len({i for i in range(1, args.steps + 1) if i % every == 0} | {args.steps}) if every else 0
        made = f"{statistics.median(written[every]):g}/{due}" if every else "-"
        share = f"{100 * max(charged[every]):.2f} %" if every else "-"
        print(f"{label:<16} {low:>10.4f} {low / base_min:>7.3f} {median:>8.4f} {median / base_median:>7.3f} "
              f"{made:>12} {share:>8}")  # fmt: skip
    print("charged: the most, over the runs, that the preview budget counted against sampling (its 2 % limit)")
    print(f"projection fit, once per job: {fit_seconds:.3f} s")


if __name__ == "__main__":
    main()
