"""What the peer watch times: every piece of work that can block on another rank, up to where the CPU waits.

On NCCL a forward returns once its kernels are queued and the CPU blocks later (in the scheduler or the
CUDA sync), so the regions must cover whole steps, not forwards; these tests check the regions' extent on
the CPU, where no NCCL is at hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from PIL import Image

from engine.checks import check_checkpoint
from engine.parallel import ParallelPlan
from engine.parallel import watch as watch_module
from engine.pipeline import FLF2VPipeline, GenerationRequest
from engine.reporting import Reporter
from engine.runtime import COLLECTIVE_TIMEOUT_HINT, Runtime
from engine.sampler import Conditioning, denoise
from engine.tasks import TASKS
from tests.unit.gloo_ranks import run_ranks


class Regions:
    """A stand-in for Runtime.waiting that remembers which regions are open."""

    def __init__(self) -> None:
        self.open: list[str] = []
        self.entered: list[str] = []

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        self.open.append(what)
        self.entered.append(what)
        try:
            yield
        finally:
            self.open.pop()


def test_each_whole_denoising_step_is_one_waiting_region():
    regions = Regions()
    seen: list[tuple[str, list[str]]] = []

    def transformer(hidden_states: torch.Tensor, **_: object) -> tuple[torch.Tensor]:
        seen.append(("forward", list(regions.open)))
        return (hidden_states[:, :16],)

    class Scheduler:
        def step(self, pred: torch.Tensor, t: torch.Tensor, latent: torch.Tensor, return_dict: bool) -> tuple:
            # Where the CPU blocks on NCCL's queued collectives: it must be inside the step's region.
            seen.append(("scheduler", list(regions.open)))
            return (latent - 0.1 * pred,)

    cond = Conditioning(torch.zeros(20, 1, 2, 2), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), torch.zeros(2, 5, 3))
    steps: list[tuple[int, list[str]]] = []
    denoise(
        transformer, torch.ones(16, 1, 2, 2), cond, Scheduler(), torch.tensor([900.0, 500.0]), 5.0,
        on_step=lambda i, n, s, lat: steps.append((i, list(regions.open))), waiting=regions,
    )  # fmt: skip
    assert seen == [
        ("forward", ["denoising step 1"]), ("scheduler", ["denoising step 1"]),
        ("forward", ["denoising step 2"]), ("scheduler", ["denoising step 2"]),
    ]  # fmt: skip
    assert steps == [(1, []), (2, [])]  # the step's report and preview wait on no one


class RecordingRuntime(Runtime):
    regions: Regions

    def waiting(self, what: str) -> contextlib.AbstractContextManager[None]:
        return self.regions(what)


def test_a_sharded_pipeline_times_the_t5_encoding_and_every_step(tiny_official_ckpt, tmp_path):
    task = TASKS["flf2v-tiny"]
    runtime = RecordingRuntime(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    runtime.regions = Regions()
    pipeline = FLF2VPipeline(task, check_checkpoint(tiny_official_ckpt, task), runtime, Reporter(runtime, None))
    pipeline.load()
    # Whole models, but the plan of a sharded run: which work the pipeline puts under the watch.
    pipeline.plan = ParallelPlan(world_size=2, rank=0, dit_fsdp=True, t5_fsdp=True)
    frame = Image.new("RGB", (64, 64), (90, 120, 200))
    pipeline.generate(GenerationRequest(
        first_frame=frame, last_frame=frame, prompt="a bird", neg_prompt="", size="64*64", frame_num=5, steps=2,
        shift=16.0, guide_scale=5.0, solver="unipc", seed=1, offload=False,
    ))  # fmt: skip
    assert runtime.regions.entered == ["encoding the prompt (sharded T5)", "denoising step 1", "denoising step 2"]


def _exchange_is_timed(rank: int, world: int) -> None:
    runtime = Runtime(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
    exchange = watch_module.exchange_peers
    open_regions: list[watch_module.Region | None] = []

    def watched_exchange(r: int, w: int) -> list[watch_module.Peer]:
        assert runtime.watch is not None, "the exchange ran before the watch that times it"
        open_regions.append(runtime.watch._region)
        return exchange(r, w)

    watch_module.exchange_peers = watched_exchange
    try:
        watch = watch_module.start_peer_watch(runtime, lambda exc: None)
    finally:
        watch_module.exchange_peers = exchange
    assert watch is not None
    watch.stop()
    (region,) = open_regions
    assert region is not None and region.what == "exchanging process ids with the other ranks"
    assert (region.limit_s, region.knob) == (runtime.timeout_s, COLLECTIVE_TIMEOUT_HINT)
    assert [p.rank for p in watch.local_peers] == [1 - rank]


def test_the_exchange_of_process_ids_is_timed_too(tmp_path):
    run_ranks(_exchange_is_timed, 2, tmp_path)
