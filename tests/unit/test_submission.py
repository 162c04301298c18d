"""Turning flags into validated job specs with the engine's own checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import BadInputError
from flf2v_tui.submission import QueueOptions, build_specs, parse_retry_on, parse_seeds, retry_changes
from storage.paths import Home
from storage.spec import engine_argv
from tests.functional.queue_helpers import write_stub_checkpoint


@pytest.fixture
def given(tmp_path, frames):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    return {"task": "flf2v-tiny", "ckpt_dir": str(ckpt), "first_frame": str(frames[0]),
            "last_frame": str(frames[1]), "prompt": "a bird"}  # fmt: skip


def test_seed_lists_and_ranges():
    assert parse_seeds("1,2, 3", None) == [1, 2, 3]
    assert parse_seeds(None, "5..7") == [5, 6, 7]
    assert parse_seeds(None, None) is None
    for bad in (("1,x", None), (None, "7..5"), (None, "3"), ("1", "1..2"), ("-2", None)):
        with pytest.raises(BadInputError):
            parse_seeds(*bad)


def test_retry_classes():
    assert parse_retry_on("comm,killed") == ("comm", "killed")
    with pytest.raises(BadInputError, match="not allowed"):
        parse_retry_on("user_input")
    with pytest.raises(BadInputError, match="unknown failure class"):
        parse_retry_on("flaky")


def test_defaults_are_resolved_into_the_recipe(given):
    (spec,) = build_specs(given, QueueOptions(gpus=2))
    assert (spec.size, spec.frame_num, spec.sample_steps, spec.sample_shift) == ("64*64", 9, 8, 16.0)
    assert spec.offload_model is False  # the engine's default for 2 processes
    assert spec.base_seed >= 0  # -1 became a concrete seed, so the job reproduces its video
    assert spec.neg_prompt is None  # the engine's official default, not copied into every row
    argv = engine_argv(spec.engine_values())
    assert argv[:2] == ["--task", "flf2v-tiny"] and "--offload_model" in argv and "False" in argv


def test_a_sweep_makes_one_spec_per_seed(given, tmp_path):
    specs = build_specs({**given, "save_file": str(tmp_path / "v-{seed}.mp4")}, QueueOptions(), [3, 4])
    assert [s.base_seed for s in specs] == [3, 4]
    assert [s.save_file for s in specs] == [str(tmp_path / "v-3.mp4"), str(tmp_path / "v-4.mp4")]
    with pytest.raises(BadInputError, match="must contain"):
        build_specs({**given, "save_file": "v.mp4"}, QueueOptions(), [3, 4])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": "100*64"}, "multiples of 16"),
        ({"frame_num": 10}, "4n\\+1"),
        ({"sample_steps": 0}, "at least 1"),
        ({"sample_solver": "euler"}, "unknown sample_solver"),
        ({"prompt": "  "}, "prompt is empty"),
        ({"ulysses_size": 3}, "needs 3 ranks, not 2"),
        ({"cfg_size": 2, "ulysses_size": 2}, "cfg_size 2 x ulysses_size 2 x ring_size 1 needs 4 ranks, not 2"),
        ({"task": "t2v"}, "unknown task"),
        ({"first_frame": "/does/not/exist.png"}, "does not exist"),
    ],
)
def test_engine_checks_reject_bad_values(given, change, message):
    with pytest.raises(BadInputError, match=message):
        build_specs({**given, **change}, QueueOptions(gpus=2))


def test_queue_options_are_checked(given):
    with pytest.raises(BadInputError, match="--nodes 0"):
        build_specs(given, QueueOptions(nodes=0))
    with pytest.raises(BadInputError, match="--gpus 0"):
        build_specs(given, QueueOptions(gpus=0))


def test_a_render_over_several_nodes_counts_every_rank_of_every_node(given):
    (spec,) = build_specs({**given, "ulysses_size": 4}, QueueOptions(nodes=2, gpus=2))
    assert (spec.nodes, spec.gpus, spec.ulysses_size) == (2, 2, 4)
    with pytest.raises(BadInputError, match="needs 4 ranks, not 3"):  # cfg x ulysses x ring must be the world
        build_specs({**given, "ulysses_size": 4}, QueueOptions(nodes=3, gpus=1))


def test_retry_changes_keep_the_recipe(given):
    (spec,) = build_specs(given, QueueOptions())
    job = {**spec.engine_values(), "gpus": 1}
    updates, frames = retry_changes(job, {"base_seed": 7}, None)
    assert updates["base_seed"] == 7 and frames == []
    assert "sample_steps" not in updates
    with pytest.raises(BadInputError, match="4n\\+1"):
        retry_changes(job, {"frame_num": 8}, None)


def test_a_sweep_resolves_the_homes_folders_once_not_once_per_seed(given, tmp_path, monkeypatch):
    """A 10,000-seed sweep checks 10,000 save files against the home's own folders; resolving those folders
    (a stat per part of each path) is done once per submit, so the work does not grow with the seeds."""
    home = Home(tmp_path / "home").ensure()
    resolved: list[Path] = []
    real_resolve = Path.resolve

    def counting_resolve(self: Path, strict: bool = False) -> Path:
        resolved.append(self)
        return real_resolve(self, strict)

    monkeypatch.setattr(Path, "resolve", counting_resolve)
    template = {**given, "save_file": str(tmp_path / "out" / "v-{seed}.mp4")}
    counts = []
    for seeds in ([1, 2], list(range(500))):
        resolved.clear()
        assert len(build_specs(template, QueueOptions(), seeds, home=home)) == len(seeds)
        counts.append(sum(1 for p in resolved if p.is_relative_to(home.root)))
    assert counts[0] == counts[1] > 0, counts  # the home's folders: the same few calls for 2 seeds as for 500


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"first_frame": "/tmp/a\x00b.png"}, "--first_frame contains a NUL"),
        ({"last_frame": "/tmp/b\ud800.png"}, "--last_frame is not valid UTF-8"),
        ({"save_file": "/tmp/v\x00.mp4"}, "--save_file contains a NUL"),
    ],
)
def test_paths_that_cannot_be_resolved_are_bad_input_before_they_are_resolved(given, change, message):
    """The form and `videos rerun` reach build_specs without the CLI's option callbacks; its own first pass is
    what keeps such a path from Path.resolve (ValueError, UnicodeEncodeError: a traceback)."""
    with pytest.raises(BadInputError, match=message):
        build_specs({**given, **change}, QueueOptions())
