"""A property of `flf2v submit` over hostile options: it queues exactly the jobs asked for (exit 0), or says what
is wrong in one line and queues nothing (exit 2). Never a traceback, never another exit code.

The real CLI runs in this process (flf2v_tui.cli.main, as the installed `flf2v` does) with a fresh FLF2V_HOME
per example, so that a few hundred examples take seconds; test_submit_bad_input.py runs the real binary.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.functional.cli_in_process import count_jobs, run_cli
from tests.functional.engine_helpers import draw_frame
from tests.functional.queue_helpers import write_stub_checkpoint

# Numbers at every edge a bound has, and beyond the 64 bits of SQLite's INTEGER.
EDGES = [0, 1, -1, 2, 5, 9, 2001, 2005, 1000, 1001, 1024, 1025, 2**31, 2**63 - 1, -(2**63), 4_000_000_001, 10**9]
BEYOND_64_BITS = [2**63, -(2**63) - 1, 2**64, 2**70, -(2**70), 10**30]
FLOATS = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "-0.0", "0", "1e-320", "3600", "3600.5", "16", "100.1"]


def numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(BEYOND_64_BITS),
        st.sampled_from(EDGES),
        st.integers(min_value=-50, max_value=3000),
        st.integers(),
    ).map(str)


def reals() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(FLOATS), st.floats(allow_nan=True, allow_infinity=True).map(repr))


def not_utf8() -> st.SearchStrategy[str]:
    """Bytes as Linux hands a program's arguments to Python: what is not UTF-8 becomes lone surrogates."""
    return st.binary(min_size=1, max_size=12).map(lambda b: os.fsdecode(b"x" + b + b"\xff"))


def texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["", " ", "a bird takes off", "\x00", "é", "\x1b[31mred", "-", "--prompt"]),
        st.text(max_size=30),
        not_utf8(),
    )


# Paths are drawn as names, made real per example: FRAME is a good frame, HOME the example's FLF2V_HOME.
FRAME_PATHS = ["FRAME", "FRAME", "FRAME", "NOFILE", "DIR", "NOTUTF8", "LONG", "", "~no-such-user-x/a.png", "TEXT"]
CKPT_PATHS = ["CKPT", "CKPT", "CKPT", "CUT", "NOFILE", "FRAME", "NOTUTF8", "LONG", "~no-such-user-x"]
SAVE_PATHS = [
    "OUT/v.mp4", "OUT/v.MP4", "OUT/v.avi", "OUT/v", "OUT", "OUT/sub/../v.mp4", "HOME/jobs/v.mp4", "HOME/v.mp4",
    "HOME/videos/v.mp4", "HOME/models/v.mp4", "OUT/../HOME/jobs/1/inputs/v.mp4", "LINK/v.mp4", "OUT/v-{seed}.mp4",
    "FRAME/v.mp4", "NOTUTF8.mp4", "LONG.mp4", "",
]  # fmt: skip


@dataclass
class World:
    root: Path
    frames: tuple[Path, Path]
    ckpt: Path
    cut_ckpt: Path
    counter: Iterator[int]

    def path(self, name: str, home: Path) -> str:
        table = {
            "FRAME": str(self.frames[0]),
            "NOFILE": str(self.root / "no-such.png"),
            "DIR": str(self.root),
            "TEXT": str(self.root / "notes.png"),
            "NOTUTF8": os.fsdecode(os.fsencode(str(self.root)) + b"/fr\xffme.png"),
            "LONG": str(self.root / ("n" * 300)),
            "CKPT": str(self.ckpt),
            "CUT": str(self.cut_ckpt),
            "OUT": str(self.root / "out"),
            "HOME": str(home),
            "LINK": str(self.root / "link-to-home-jobs"),
        }
        for key, value in table.items():
            if name.startswith(key):
                return value + name[len(key) :]
        return name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("property")
    frames = draw_frame(root / "first.png", (64, 64), 0.8, 0), draw_frame(root / "last.png", (64, 64), 0.2, 60)
    (root / "notes.png").write_text("not an image")
    shutil.copy(frames[0], os.fsdecode(os.fsencode(str(root)) + b"/fr\xffme.png"))  # a real file, a non-UTF-8 name
    ckpt = write_stub_checkpoint(root / "ckpt")
    cut = shutil.copytree(ckpt, root / "cut-ckpt")
    header = json.dumps({"w": {"dtype": "F32", "shape": [64], "data_offsets": [0, 256]}}).encode()
    (cut / "diffusion_pytorch_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(100))
    (root / "out").mkdir()
    return World(root, frames, ckpt, cut, itertools.count())


def mostly(good: object, other: st.SearchStrategy) -> st.SearchStrategy:
    """`good` three times in four: enough examples pass every check to test what gets queued."""
    return st.integers(0, 3).flatmap(lambda i: other if i == 3 else st.just(good))  # hypothesis favours 0


@dataclass
class Seeds:
    flag: str | None
    text: str
    count: int  # jobs queued if accepted


def seeds() -> st.SearchStrategy[Seeds]:
    edges = st.sampled_from(EDGES + BEYOND_64_BITS)
    lists = st.lists(st.one_of(st.integers(0, 10**6), edges), min_size=1, max_size=4)
    ranges = st.tuples(st.one_of(edges, st.just(3)), st.one_of(edges, st.just(7)))
    return st.one_of(
        st.just(Seeds(None, "", 1)),
        lists.map(lambda xs: Seeds("--seeds", ",".join(map(str, xs)), len(xs))),
        ranges.map(lambda ab: Seeds("--seed-range", f"{ab[0]}..{ab[1]}", ab[1] - ab[0] + 1)),
        texts().map(lambda t: Seeds("--seeds", t, -1)),
    )


OPTIONS = {
    "--task": st.one_of(st.sampled_from(["flf2v-tiny", "flf2v-14B"]), texts()),
    "--size": st.one_of(st.sampled_from(["64*64", "96*64", "100*64", "64*99999999999999999999999"]), texts()),
    "--frame_num": numbers(),
    "--sample_steps": numbers(),
    "--sample_shift": reals(),
    "--sample_guide_scale": reals(),
    "--sample_solver": st.one_of(st.sampled_from(["unipc", "dpm++"]), texts()),
    "--base_seed": numbers(),
    "--neg_prompt": texts(),
    "--ulysses_size": numbers(),
    "--ring_size": numbers(),
    "--preview_every": numbers(),
    "--offload_model": st.one_of(st.sampled_from(["True", "False"]), texts()),
    "--gpus": numbers(),
    "--priority": numbers(),
    "--retries": numbers(),
    "--retry-backoff": reals(),
    "--retry-on": st.one_of(st.sampled_from(["comm", "oom,killed", "user_input"]), texts()),
    "--label": texts(),
    "--after": numbers(),
}


@st.composite
def some_options(draw: st.DrawFn) -> dict[str, str]:
    """A few options at a time: with all twenty hostile at once nearly every example would fail on the first,
    and the jobs that should be queued would never be tried."""
    names = draw(st.sets(st.sampled_from(sorted(OPTIONS)), min_size=1, max_size=2))
    return {name: draw(OPTIONS[name]) for name in names}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    options=some_options(),
    prompt=mostly("a bird takes off", texts()),
    first=mostly("FRAME", st.sampled_from(FRAME_PATHS)),
    last=mostly("FRAME", st.sampled_from(FRAME_PATHS)),
    ckpt=mostly("CKPT", st.sampled_from(CKPT_PATHS)),
    save=mostly(None, st.sampled_from(SAVE_PATHS)),
    sweep=mostly(Seeds(None, "", 1), seeds()),
)
def test_submit_queues_what_was_asked_or_says_why_in_one_line(world, options, prompt, first, last, ckpt, save, sweep):
    home = world.root / f"home-{next(world.counter)}"
    link = world.root / "link-to-home-jobs"
    link.unlink(missing_ok=True)
    link.symlink_to(home / "jobs")  # a name outside the home that writes into it
    argv = ["submit", "--json", "--prompt", prompt, "--first_frame", world.path(first, home)]
    argv += ["--last_frame", world.path(last, home), "--ckpt_dir", world.path(ckpt, home)]
    if save is not None:
        argv += ["--save_file", world.path(save, home)]
    if sweep.flag:
        argv += [sweep.flag, sweep.text]
    for flag, value in options.items():
        argv += [flag, value]
    code, out, err = run_cli(argv, home)
    event(f"exit {code}")
    queued = count_jobs(home)
    if code == 0:
        ids = json.loads(out)["ids"]
        assert err == "" and queued == len(ids) >= 1, (argv, out, err)
        assert sweep.count < 0 or len(ids) == sweep.count, (argv, ids)
    else:
        assert code == 2, (argv, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert queued == 0 and out == "", (argv, out)
        jobs = home / "jobs"
        assert not jobs.exists() or not list(jobs.iterdir()), (argv, list(jobs.iterdir()))
    assert "Traceback" not in out + err
