"""Recipes embedded in the mp4 and checkpoint fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from engine.mp4 import write_mp4
from engine.recipe import build_recipe, checkpoint_fingerprint, read_recipe, recipe_comment

TRICKY = ['a "bird" = flies; # over\nthe sea 鸟', "ends with a backslash\\", "three\\\\\\\nx", "a\n\nb\\\n", ""]


@pytest.mark.parametrize("prompt", TRICKY)
def test_recipe_survives_the_mp4_round_trip(tmp_path, prompt):
    recipe = build_recipe({"task": "flf2v-tiny", "prompt": prompt, "ckpt_dir": str(tmp_path)}, 7, 2, "0.1", "ab")
    path = write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "v.mp4", 16,
                     metadata={"comment": recipe_comment(recipe)})  # fmt: skip
    assert read_recipe(path) == recipe
    assert recipe["base_seed"] == 7 and recipe["world_size"] == 2


def test_the_recipe_names_the_gpu_it_ran_on(tmp_path):
    """The same seed can draw other noise on another GPU model (README, "What is not promised")."""
    args = {"task": "flf2v-tiny", "prompt": "p", "ckpt_dir": str(tmp_path)}
    recipe = build_recipe(args, 7, 8, "0.1", "ab", gpu="NVIDIA H100 80GB HBM3")
    path = write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "v.mp4", 16,
                     metadata={"comment": recipe_comment(recipe)})  # fmt: skip
    assert read_recipe(path)["gpu"] == "NVIDIA H100 80GB HBM3"
    assert build_recipe(args, 7, 1, "0.1", "ab")["gpu"] is None  # the CPU


def test_video_without_recipe(tmp_path):
    path = write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "v.mp4", 16)
    assert read_recipe(path) is None


def test_fingerprint_follows_content_not_location(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        (root / "w.bin").write_bytes(b"x" * 3_000_000)
    assert checkpoint_fingerprint(a, [a / "w.bin"]) == checkpoint_fingerprint(b, [b / "w.bin"])
    (b / "w.bin").write_bytes(b"x" * 2_999_999 + b"y")  # last megabyte changed
    assert checkpoint_fingerprint(a, [a / "w.bin"]) != checkpoint_fingerprint(b, [b / "w.bin"])
