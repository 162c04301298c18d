"""Latent previews: the projection fitted by least squares, the split between the sampling thread and the
writer, and the 2 % budget, checked with an injected clock (no timing in the test)."""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.cli_args import build_parser
from engine.preview import (
    PREVIEW_BUDGET,
    PREVIEW_MIN_WIDTH,
    LatentPreviewer,
    PreviewBudget,
    PreviewWriter,
    fit_projection,
    project_latent,
    strip_image,
)
from flf2v_tui.submission import QUEUE_PREVIEW_EVERY, QueueOptions, build_specs
from storage.jobs import insert_jobs
from storage.spec import engine_argv
from tests.functional.queue_helpers import write_stub_checkpoint


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_steps(budget: PreviewBudget, clock: FakeClock, steps: int, step_s: float, preview_s: float) -> list[int]:
    """Every step is due; returns the steps whose preview was made. Checks the bound after every preview."""
    made = []
    for step in range(1, steps + 1):
        clock.now += step_s
        budget.step_done()
        if budget.allows():
            with budget.charge():
                clock.now += preview_s
            made.append(step)
            if len(made) > 1:  # the first preview's cost is not known before it is made
                assert budget.spent() <= budget.share * budget.sampling_seconds() + 1e-12
    return made


def test_the_budget_thins_costly_previews_to_two_percent_of_sampling():
    clock = FakeClock()
    budget = PreviewBudget(clock=clock)
    made = run_steps(budget, clock, steps=200, step_s=1.0, preview_s=0.05)  # 5 % a step if made every step
    assert made[0] == 2  # the sampling clock starts at the end of step 1
    assert budget.spent() <= PREVIEW_BUDGET * budget.sampling_seconds()
    # Thinned, not starved: close to the most the budget affords (2 % of 199 s in 0.05 s previews: 79).
    assert 76 <= len(made) <= 80
    gaps = {b - a for a, b in itertools.pairwise(made[1:])}
    assert gaps <= {2, 3}  # spread over the run, not bunched


def test_cheap_previews_are_all_made():
    clock = FakeClock()
    budget = PreviewBudget(clock=clock)
    made = run_steps(budget, clock, steps=50, step_s=2.0, preview_s=0.002)  # 0.1 % of a step
    assert made == list(range(2, 51))


def test_preview_time_is_not_counted_as_sampling_time():
    clock = FakeClock()
    budget = PreviewBudget(clock=clock)
    budget.step_done()
    clock.now += 10.0
    with budget.charge():
        clock.now += 1.0
    assert budget.sampling_seconds() == pytest.approx(10.0) and budget.spent() == pytest.approx(1.0)


class FakeWriter:
    def __init__(self, cpu: float = 0.0) -> None:
        self.cpu, self.submitted = cpu, []

    def busy_seconds(self) -> float:
        return self.cpu

    def full(self) -> bool:
        return False

    def submit(self, step: int, strip: torch.Tensor) -> bool:
        self.submitted.append(step)
        return True

    def close(self) -> None:
        pass


def _previewer(clock: FakeClock, writer: FakeWriter, every: int) -> LatentPreviewer:
    projection = (torch.zeros(16, 3), torch.zeros(3))
    return LatentPreviewer(projection, every, Path("/unused"), lambda s, p: None, clock=clock, writer=writer)


def test_previewer_makes_due_previews_and_says_once_when_thinning(caplog):
    clock, writer = FakeClock(), FakeWriter()
    previewer = _previewer(clock, writer, every=5)
    latent = torch.zeros(16, 5, 4, 4)
    with caplog.at_level(logging.INFO, logger="flf2v.engine"):
        for step in range(1, 21):
            clock.now += 1.0
            previewer(step, 20, latent)
    assert writer.submitted == [5, 10, 15, 20] and not caplog.records
    # On a CPU device the writer's CPU time is the sampling's loss: a writer that took 1 s thins them.
    writer.cpu = 1.0
    with caplog.at_level(logging.INFO, logger="flf2v.engine"):
        for step in range(21, 61):
            clock.now += 1.0
            previewer(step, 60, latent)
    thinned = [r for r in caplog.records if "thinned" in r.getMessage()]
    assert len(thinned) == 1 and previewer.skipped > 0
    assert previewer.budget.spent() <= PREVIEW_BUDGET * previewer.budget.sampling_seconds()


def test_projection_is_on_the_host_in_eight_bits_and_the_writer_enlarges_it():
    weight, bias = torch.zeros(16, 3), torch.tensor([1.0, 0.0, -1.0])
    strip = project_latent(torch.randn(16, 7, 6, 10), weight, bias)
    assert strip.dtype == torch.uint8 and strip.device.type == "cpu" and strip.shape == (3, 6, 30)
    assert strip[:, 0, 0].tolist() == [255, 128, 0]
    image = strip_image(strip)
    assert image.size == (30 * (PREVIEW_MIN_WIDTH // 30), 6 * (PREVIEW_MIN_WIDTH // 30))


def test_writer_writes_pngs_and_reports_them(tmp_path):
    written = []
    writer = PreviewWriter(tmp_path / "previews", lambda step, path: written.append((step, path)))
    assert writer.submit(3, torch.full((3, 4, 12), 200, dtype=torch.uint8))
    writer.close()
    ((step, path),) = written
    assert step == 3 and path == tmp_path / "previews" / "step-0003.png"
    assert Image.open(path).getpixel((0, 0)) == (200, 200, 200) and writer.busy_seconds() >= 0


def test_a_writer_that_is_behind_refuses_a_strip_and_says_it_is_full(tmp_path):
    busy, release = threading.Event(), threading.Event()

    def written(step: int, path: Path) -> None:
        busy.set()
        release.wait(10)

    writer = PreviewWriter(tmp_path / "previews", written)
    strip = torch.zeros(3, 2, 2, dtype=torch.uint8)
    assert writer.submit(1, strip) and busy.wait(10)  # the writer is now stuck on strip 1
    accepted = [writer.submit(step, strip) for step in range(2, 7)]  # its queue holds 4
    assert accepted == [True] * 4 + [False] and writer.full()
    release.set()
    writer.close()


def test_fit_recovers_a_linear_vae_by_least_squares():
    """A 'VAE' whose latent is a known linear function of the pooled pixels: the fit must invert it."""
    gen = torch.Generator().manual_seed(1)
    mix, offset = torch.randn(16, 3, generator=gen), torch.randn(16, generator=gen)

    def encode(video: torch.Tensor) -> torch.Tensor:  # [3, 1, H, W] -> [16, 1, H/8, W/8]
        pooled = F.avg_pool2d(video[:, 0][None], 8)[0]
        return (torch.einsum("chw,lc->lhw", pooled, mix) + offset.view(16, 1, 1))[:, None]

    weight, bias = fit_projection(encode, 8, torch.device("cpu"))
    assert weight.shape == (16, 3) and bias.shape == (3,)
    image = torch.rand(3, 1, 32, 32) * 2 - 1
    rgb = torch.einsum("chw,cr->rhw", encode(image)[:, 0], weight) + bias.view(3, 1, 1)
    assert torch.allclose(rgb, F.avg_pool2d(image[:, 0][None], 8)[0], atol=2e-3)


def test_the_engine_alone_makes_no_previews_and_a_queued_job_one_every_5_steps(tmp_path, frames, conn, home):
    alone = build_parser().parse_args(["--prompt", "x", "--first_frame", "a.png", "--last_frame", "b.png"])
    assert alone.preview_every == 0
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    given = {"task": "flf2v-tiny", "ckpt_dir": str(ckpt), "first_frame": str(frames[0]),
             "last_frame": str(frames[1]), "prompt": "a bird"}  # fmt: skip
    (spec,) = build_specs(given, QueueOptions())
    (off,) = build_specs({**given, "preview_every": 0}, QueueOptions())  # asked for none: none
    assert (spec.preview_every, off.preview_every) == (QUEUE_PREVIEW_EVERY, 0) and QUEUE_PREVIEW_EVERY == 5
    job, job_off = insert_jobs(conn, home, [spec, off])
    rows = dict(conn.execute("SELECT id, preview_every FROM jobs WHERE id IN (?, ?)", (job, job_off)).fetchall())
    assert rows == {job: 5, job_off: 0}
    assert "--preview_every" in engine_argv(spec.engine_values())  # and the worker passes it to the engine
