"""The engine on 2 (and 4) gloo ranks under torchrun: FSDP and Ulysses give one process's video, sharded loading
keeps each rank's memory to its share, and a lost or hung rank ends the run with a `comm` error event."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from engine.telemetry import LOAD_STAGES, STAGES, read_events, validate_event
from engine.tiny import write_tiny_checkpoint
from tests.functional.engine_helpers import REPO, draw_frame, engine_command, free_port, run_engine, tiny_args

TWO_RANK_CASES = {
    "dit_fsdp": ["--dit_fsdp"],
    "t5_fsdp": ["--t5_fsdp"],
    "fsdp_and_ulysses": ["--dit_fsdp", "--t5_fsdp", "--ulysses_size", "2"],
    # CFG-parallel: the conditional branch on rank 0, the unconditional one on rank 1, swapped every step.
    "cfg_parallel": ["--cfg_size", "2"],
    "cfg_parallel_and_fsdp": ["--cfg_size", "2", "--dit_fsdp", "--t5_fsdp"],
    # The seed's own flags: with offload, the sharded T5 and DiT are moved off the device after their phase
    # (FSDP2's `.to("cpu")` reshards first), which runs here on gloo too.
    "seed_flags_with_offload": ["--dit_fsdp", "--t5_fsdp", "--offload_model", "True"],
    # T5 whole on the CPU beside a sharded DiT: allowed by the official code (only --t5_cpu with --t5_fsdp is not).
    "t5_cpu_and_dit_fsdp": ["--t5_cpu", "--dit_fsdp"],
}


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("dist-frames")
    return draw_frame(folder / "first.png", (64, 64), 0.8, 0), draw_frame(folder / "last.png", (64, 64), 0.2, 60)


def _render(ckpt: Path, frames: tuple[Path, Path], out: Path, flags: list[str], nproc: int, **extra: str) -> dict:
    args = tiny_args(ckpt, *frames, out / "v.mp4", events=str(out / "events.jsonl"), log_dir=str(out / "logs"),
                     dump_video=str(out / "video.npy"), **extra)  # fmt: skip
    proc = run_engine([*args, *flags], nproc=nproc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"video": np.load(out / "video.npy"), "events": read_events(out / "events.jsonl"), "dir": out}


@pytest.fixture(scope="module")
def one_process(tiny_official_ckpt, frames, tmp_path_factory) -> dict[str, np.ndarray]:
    """The reference videos: 64*64 (48 tokens per sample) and 48*48 (27 tokens, odd)."""
    return {
        size: _render(tiny_official_ckpt, frames, tmp_path_factory.mktemp(f"one-{size}"), [], 1, size=size)["video"]
        for size in ("64*64", "48*48")
    }


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("case", list(TWO_RANK_CASES))
def test_two_ranks_give_the_one_process_video(tiny_official_ckpt, frames, one_process, tmp_path, case):
    run = _render(tiny_official_ckpt, frames, tmp_path, TWO_RANK_CASES[case], nproc=2)
    assert _relative(run["video"], one_process["64*64"]) <= 1e-5
    events = run["events"]
    assert all(validate_event(e) == [] for e in events)
    flags, args = TWO_RANK_CASES[case], next(e["args"] for e in events if e["kind"] == "start")
    assert (args["offload_model"], args["t5_cpu"]) == ("--offload_model" in flags, "--t5_cpu" in flags)
    for rank in (0, 1):  # every rank reports its memory at each stage's begin and end, and every step
        memory = [e for e in events if e["kind"] == "memory" and e["rank"] == rank]
        stages = {(e["stage"], e["phase"]) for e in memory if "stage" in e}
        assert {(s, p) for s in STAGES if s not in ("decode", "save") for p in ("begin", "end")} <= stages
        assert [e["step"] for e in memory if "step" in e] == [1, 2, 3, 4]
    log = (tmp_path / "logs" / "rank1.log").read_text()
    assert "not sharded yet" not in log
    line = next(x for x in log.splitlines() if "Parallelism: " in x)
    assert ("DiT sharded with FSDP2" in line) == ("--dit_fsdp" in TWO_RANK_CASES[case])
    assert ("T5 sharded with FSDP2" in line) == ("--t5_fsdp" in TWO_RANK_CASES[case])
    assert ("Ulysses" in line) == ("--ulysses_size" in TWO_RANK_CASES[case])


def test_four_ranks_cfg_parallel_by_ulysses_with_fsdp(tiny_official_ckpt, frames, one_process, tmp_path):
    # cfg 2 x ulysses 2: two Ulysses groups of 2 (their own process groups), one per guidance branch, the DiT
    # sharded within each half and T5 over all 4.
    flags = ["--cfg_size", "2", "--ulysses_size", "2", "--dit_fsdp", "--t5_fsdp"]
    run = _render(tiny_official_ckpt, frames, tmp_path, flags, 4)
    assert _relative(run["video"], one_process["64*64"]) <= 1e-5
    log = (tmp_path / "logs" / "rank3.log").read_text()
    line = next(x for x in log.splitlines() if "Parallelism: " in x)
    assert "4 ranks: DiT sharded with FSDP2 within each half; T5 sharded with FSDP2;" in line
    assert "the conditional branch on ranks 0-1, the unconditional one on ranks 2-3" in line
    assert "over 2 ranks (Ulysses), 2 groups" in line
    start = next(e for e in run["events"] if e["kind"] == "start")
    assert (start["args"]["cfg_size"], start["args"]["cfg_batch"], start["attention"]) == (2, False, "sdpa (native)")
    assert {e["rank"] for e in run["events"] if e["kind"] == "memory"} == {0, 1, 2, 3}


def test_ulysses_with_a_token_count_that_does_not_divide(tiny_official_ckpt, frames, one_process, tmp_path):
    run = _render(tiny_official_ckpt, frames, tmp_path, ["--ulysses_size", "2", "--t5_fsdp"], 2, size="48*48")
    log = (tmp_path / "logs" / "rank0.log").read_text()
    assert "latent 6x6" in log  # 3 latent frames x 3 x 3 patches: 27 tokens over 2 ranks
    assert _relative(run["video"], one_process["48*48"]) <= 1e-5


# ---- memory --------------------------------------------------------------------------------------------


def _load_growth(events: list[dict], rank: int) -> int:
    """Peak resident memory while loading, above the resident memory just before loading began."""
    memory = [e for e in events if e["kind"] == "memory" and e["rank"] == rank and "stage" in e]
    before = next(e["rss"] for e in memory if (e["stage"], e["phase"]) == ("load_text_encoder", "begin"))
    # Each stage's end event holds that stage's own peak (the peak starts again at each stage).
    peak = max(e["peak_rss"] for e in memory if e["phase"] == "end" and e["stage"] in LOAD_STAGES)
    return peak - before


@pytest.mark.parametrize("layout", ["official", "diffusers"])
def test_fsdp_loading_peak_memory_per_rank_is_well_below_a_whole_copy(frames, tmp_path_factory, layout):
    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("medium") / "ckpt", layout=layout, preset="medium")
    dit_files = "diffusion_pytorch_model*.safetensors" if layout == "official" else "transformer/*.safetensors"
    weights = sum(p.stat().st_size for p in ckpt.glob(dit_files))
    assert weights > 50e6
    quick = {"frame_num": "5", "sample_steps": "1"}
    whole = _render(ckpt, frames, tmp_path_factory.mktemp("whole"), [], 1, **quick)
    sharded = _render(ckpt, frames, tmp_path_factory.mktemp("sharded"), ["--dit_fsdp", "--t5_fsdp"], 2, **quick)
    whole_growth = _load_growth(whole["events"], 0)
    assert whole_growth > weights  # the whole DiT really is resident in the one-process run
    for rank in (0, 1):
        growth = _load_growth(sharded["events"], rank)
        assert growth < 0.75 * whole_growth, f"rank {rank}: {growth / 1e6:.0f} MB vs {whole_growth / 1e6:.0f} MB"
    assert _relative(sharded["video"], whole["video"]) <= 1e-5


# ---- faults --------------------------------------------------------------------------------------------


def _start(ckpt: Path, frames: tuple[Path, Path], out: Path, **env: str) -> subprocess.Popen:
    args = tiny_args(ckpt, *frames, out / "v.mp4", events=str(out / "events.jsonl"), log_dir=str(out / "logs"),
                     sample_steps="400")  # fmt: skip
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen(engine_command([*args, "--dit_fsdp"], 2), env=environ, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _wait_for(condition, what: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic()


def _rank_process(torchrun: subprocess.Popen, rank: int) -> psutil.Process:
    for proc in psutil.Process(torchrun.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("RANK") == str(rank):
                return proc
    raise AssertionError(f"no process of rank {rank}")


@contextlib.contextmanager
def _running(torchrun: subprocess.Popen):
    try:
        yield torchrun
    finally:
        for proc in psutil.Process(torchrun.pid).children(recursive=True) if torchrun.poll() is None else []:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        torchrun.kill()
        torchrun.wait()


def _errors(out: Path) -> list[dict]:
    return [e for e in read_events(out / "events.jsonl") if e["kind"] == "error"]


def _stepping(out: Path) -> bool:
    return any(e["kind"] == "step" for e in read_events(out / "events.jsonl"))


def test_killing_a_rank_stops_the_other_with_an_error_naming_it(tiny_official_ckpt, frames, tmp_path):
    with _running(_start(tiny_official_ckpt, frames, tmp_path)) as torchrun:
        _wait_for(lambda: _stepping(tmp_path), "the first step")
        _rank_process(torchrun, 1).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        torchrun.wait(timeout=60)
        assert time.monotonic() - killed < 60
    (error,) = _errors(tmp_path)
    assert (error["rank"], error["class"], error["type"]) == (0, "comm", "PeerLostError")
    assert error["message"].startswith("rank 1 (pid ")
    assert not (tmp_path / "v.mp4").exists()


def test_a_hung_rank_becomes_a_comm_error_not_a_silent_hang(tiny_official_ckpt, frames, tmp_path):
    with _running(_start(tiny_official_ckpt, frames, tmp_path, FLF2V_DIST_TIMEOUT="4")) as torchrun:
        _wait_for(lambda: _stepping(tmp_path), "the first step")
        stuck = _rank_process(torchrun, 1)
        stuck.send_signal(signal.SIGSTOP)  # alive, but it never answers again
        stopped = time.monotonic()
        reported = _wait_for(lambda: _errors(tmp_path), "rank 0's error event", timeout=60)
        assert reported - stopped < 30
        stuck.send_signal(signal.SIGKILL)
        torchrun.wait(timeout=60)
    (error,) = _errors(tmp_path)
    assert (error["rank"], error["class"]) == (0, "comm")


def test_a_rank_whose_process_group_never_forms_writes_a_comm_error_event(tiny_official_ckpt, frames, tmp_path):
    # Rank 0 of 2 alone: rank 1 died before it joined, so the rendezvous times out.
    args = tiny_args(tiny_official_ckpt, *frames, tmp_path / "v.mp4", events=str(tmp_path / "events.jsonl"),
                     log_dir=str(tmp_path / "logs"))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": "0",
           "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "FLF2V_DIST_TIMEOUT": "2"}  # fmt: skip
    proc = subprocess.run(engine_command(args, 1), env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    (error,) = _errors(tmp_path)
    assert (error["rank"], error["class"]) == (0, "comm"), error
    assert "rank 0 could not start" in proc.stderr


@pytest.mark.parametrize("value", ["ten", "0", "inf"])
def test_a_bad_flf2v_dist_timeout_is_bad_input(tiny_official_ckpt, frames, tmp_path, value):
    args = tiny_args(tiny_official_ckpt, *frames, tmp_path / "v.mp4", events=str(tmp_path / "events.jsonl"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLF2V_DIST_TIMEOUT": value}
    proc = subprocess.run(engine_command(args, 1), env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [f"error: FLF2V_DIST_TIMEOUT={value!r} " + (
        "is not a number of seconds" if value == "ten" else "must be a positive number of seconds")]  # fmt: skip
    (error,) = _errors(tmp_path)
    assert (error["class"], error["type"]) == ("user_input", "BadInputError")


@pytest.mark.parametrize("delay", ["decode=8", "load@1=8"])
def test_rank_zero_tail_and_uneven_loading_do_not_count_against_the_collective_timeout(
    tiny_official_ckpt, frames, tmp_path, monkeypatch, delay
):
    """decode: rank 0 decodes for longer than FLF2V_DIST_TIMEOUT while rank 1 is done; load: rank 1 finishes
    loading that much later than rank 0. Either way the video is written and every rank exits 0."""
    monkeypatch.setenv("FLF2V_DIST_TIMEOUT", "4")
    monkeypatch.setenv("FLF2V_TEST_DELAY", delay)
    run = _render(tiny_official_ckpt, frames, tmp_path, ["--dit_fsdp", "--t5_fsdp"], nproc=2)
    assert run["video"].shape[0] == 3 and (tmp_path / "v.mp4").stat().st_size > 0
    kinds = [e["kind"] for e in run["events"]]
    assert "error" not in kinds and kinds[-1] == "done"
    if delay.startswith("decode"):
        decode = next(
            e for e in run["events"] if e["kind"] == "stage" and e["name"] == "decode" and e["phase"] == "end"
        )
        assert decode["seconds"] > 4  # the tail really outlasted the collective timeout
