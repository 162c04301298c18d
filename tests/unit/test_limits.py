"""The one table of ranges and the text rule (engine.limits, engine.flags, storage.spec), and the checks built on them:
the safetensors header, the machine's rank capacity and where --save_file may write."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest

from engine.checks import _safetensors_problem
from engine.errors import BadInputError
from engine.flags import ENGINE_BOUNDS
from engine.limits import INT64_MAX, SEED, Bound, shown, text_problem
from flf2v_tui.gpus import FakeSource, GpuUnavailable
from flf2v_tui.rank_capacity import check_fits_here, cpu_cores, rank_capacity
from flf2v_tui.save_target import HomeFolders, check_save_target
from flf2v_tui.screen_data.form import field_for
from flf2v_tui.submission import parse_seeds
from flf2v_tui.worker.pool import Pool, PoolError
from storage.paths import Home
from storage.spec import BOUNDS, JobSpec, check_values


@pytest.mark.parametrize(
    ("bound", "value", "problem"),
    [
        (ENGINE_BOUNDS["sample_steps"], 0, "0 must be at least 1"),
        (ENGINE_BOUNDS["sample_steps"], 1001, "1001 must be at most 1000 (the model has 1000 timesteps in all)"),
        (ENGINE_BOUNDS["sample_shift"], 0.0, "0.0 must be more than 0"),
        (ENGINE_BOUNDS["sample_shift"], math.nan, "nan must be a finite number"),
        (ENGINE_BOUNDS["sample_guide_scale"], -math.inf, "-inf must be a finite number"),
        (ENGINE_BOUNDS["frame_num"], 2.5, "2.5 must be a whole number"),
        (BOUNDS["priority"], True, "True is not a number"),
        (SEED, 2**64, "18446744073709551616 must be at most 9223372036854775807"),
        (SEED, -(10**30), "-1000000…0000 (32 digits) must be at least 0"),
    ],
)
def test_bounds_say_what_is_wrong(bound: Bound, value: object, problem: str) -> None:
    found = bound.problem(value)
    assert found is not None and found.startswith(problem), found


def test_edges_are_inside_and_every_bound_fits_64_bits() -> None:
    for name, bound in BOUNDS.items():
        assert bound.problem(bound.high) is None, name
        assert bound.low >= -(2**63) and bound.high <= INT64_MAX, name
        if not bound.low_open:
            assert bound.problem(bound.low) is None, name
    assert shown(10**30) == "10000000…0000 (31 digits)" and shown(-1) == "-1" and shown(math.nan) == "nan"


def test_text_rule_names_the_byte() -> None:
    assert text_problem("a bird, é, 鸟") is None
    assert text_problem(os.fsdecode(b"ab\xff")) == "is not valid UTF-8 (byte 0xff at character 3)"
    assert text_problem("x\ud800") == "is not valid UTF-8 (a lone surrogate U+D800 at character 2)"
    assert text_problem("a\x00b") == "contains a NUL character at character 2"


def test_jobspec_is_the_last_gate() -> None:
    base = {"task": "flf2v-tiny", "size": "64*64", "frame_num": 9, "ckpt_dir": "/c", "sample_solver": "unipc",
            "sample_steps": 8, "sample_shift": 16.0, "sample_guide_scale": 5.0, "base_seed": 1,
            "first_frame": "/a.png", "last_frame": "/b.png", "prompt": "p"}  # fmt: skip
    JobSpec(**base)
    for change, message in [({"priority": 2**63}, "--priority"), ({"retry_backoff": math.nan}, "--retry-backoff"),
                            ({"labels": ["ok", os.fsdecode(b"\xfe")]}, "--label"), ({"after": [2**64]}, "--after"),
                            ({"first_frame_src": os.fsdecode(b"/\xff.png")}, "--first_frame is not valid UTF-8"),
                            ({"base_seed": 2**63}, "--base_seed")]:  # fmt: skip
        with pytest.raises(BadInputError, match=message):
            JobSpec(**{**base, **change})
    check_values({"gpus": None, "prompt": None})  # not given: nothing to check


def test_seed_lists_fit_64_bits_and_ranges_are_counted_first() -> None:
    assert parse_seeds(f"0,{2**63 - 1}", None) == [0, 2**63 - 1]
    with pytest.raises(BadInputError, match=r"--seeds .* must be at most"):
        parse_seeds(f"1,{2**63}", None)
    with pytest.raises(BadInputError, match="more than the 10000 allowed"):
        parse_seeds(None, f"0..{2**62}")  # refused before a list of 2**62 seeds is made


def _safetensors(path: Path, header: object, data: int) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))
    return path


def test_safetensors_header_must_describe_the_file(tmp_path: Path, tiny_official_ckpt: Path) -> None:
    assert _safetensors_problem(Path(tiny_official_ckpt) / "diffusion_pytorch_model.safetensors") is None
    entry = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    assert _safetensors_problem(_safetensors(tmp_path / "ok.safetensors", {"w": entry, "__metadata__": {}}, 16)) is None
    cut = _safetensors_problem(_safetensors(tmp_path / "cut.safetensors", {"w": entry}, 10))
    assert cut == "truncated: its header describes 16 bytes of tensors, the file holds 10"
    extra = _safetensors_problem(_safetensors(tmp_path / "extra.safetensors", {"w": entry}, 20))
    assert extra == "not a safetensors file: 4 bytes after the last tensor"
    for header in ([1, 2], {"w": {"data_offsets": [0, "16"]}}, {"w": 3}):
        problem = _safetensors_problem(_safetensors(tmp_path / "bad.safetensors", header, 16))
        assert problem is not None and problem.startswith("not a safetensors file"), header


class NoNvml:
    def devices(self) -> list:
        raise GpuUnavailable("NVML is not available")


def test_rank_capacity_follows_how_the_worker_sizes_its_pool(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FLF2V_GPUS", raising=False)
    fake = tmp_path / "gpus.json"
    fake.write_text(json.dumps([{"index": i, "name": "G", "uuid": f"G{i}", "memory_total": 1, "memory_used": 0}
                                for i in range(2)]))  # fmt: skip
    assert rank_capacity(FakeSource(fake)) == (2, "this machine has 2 GPUs")
    most, why = rank_capacity(NoNvml())
    assert most == 2 * cpu_cores() and "no GPU" in why
    with pytest.raises(BadInputError, match=r"--gpus 3: this machine has 2 GPUs.*--other-worker"):
        check_fits_here(3, FakeSource(fake))
    check_fits_here(2, FakeSource(fake))
    monkeypatch.setenv("FLF2V_GPUS", "0,1,2")  # the worker's default pool when it is set
    assert rank_capacity(FakeSource(fake))[0] == 3


@pytest.mark.parametrize(("listed", "words"), [("0,0", "must list distinct"), ("0,x", "must be GPU indices")])
def test_rank_capacity_reads_flf2v_gpus_as_the_worker_does(monkeypatch, listed: str, words: str) -> None:
    monkeypatch.setenv("FLF2V_GPUS", listed)
    with pytest.raises(PoolError, match=words):
        Pool.build(NoNvml())  # the worker refuses to start with it...
    with pytest.raises(BadInputError, match=rf"^FLF2V_GPUS '{listed}' {words}.*refuses it too.*--other-worker"):
        check_fits_here(1)  # ...so no job could ever start here: said, not counted as GPUs
    monkeypatch.setenv("FLF2V_GPUS", " 0, 1 ")
    assert rank_capacity(NoNvml()) == (2, "FLF2V_GPUS gives the worker 2 GPUs")


def test_save_target_is_judged_by_where_it_really_writes(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    elsewhere = tmp_path / "scratch-jobs"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.rmdir(home.jobs)
    home.jobs.symlink_to(elsewhere)  # jobs/ on another disk: still the home's own folder
    check_save_target(str(home.videos / "mine.mp4"), HomeFolders.of(home))
    check_save_target(str(tmp_path / "out" / "new" / "v.mp4"), HomeFolders.of(home))
    for target, message in [
        (elsewhere / "1" / "v.mp4", "inside FLF2V_HOME's own folders"),
        (home.root / "v.mp4", "inside FLF2V_HOME's own folders"),
        (home.models / "v.mp4", "inside FLF2V_HOME's own folders"),
        (tmp_path / "out" / "v.webm", r"must end in \.mp4"),
        (tmp_path / "out", "is a folder"),
        (tmp_path / "out" / "v.mp4" / "x.mp4", None),
    ]:
        if message is None:  # a file where the folder should be
            (tmp_path / "out" / "v.mp4").write_bytes(b"")
            message = "is a file, not a folder"
        with pytest.raises(BadInputError, match=message):
            check_save_target(str(target), HomeFolders.of(home))


def _refused(values: dict[str, object], message: str) -> BadInputError:
    with pytest.raises(BadInputError, match=message) as caught:
        check_values(values)
    return caught.value


def test_form_routes_range_errors_to_their_fields() -> None:
    assert field_for(_refused({"priority": 10**10}, "--priority 10000000000 must be at most 1000000000")) == "priority"
    assert field_for(_refused({"sample_shift": math.nan}, "--sample_shift nan must be a finite")) == "sample_shift"
    seed = _refused({"base_seed": 2**63}, r"--base_seed 9223372036854775808 must be at most .* -1 draws one\)")
    assert field_for(seed) == "seeds"
