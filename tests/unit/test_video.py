"""MP4 writing: normalisation, atomic write, read-back check, file names."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import torch

from engine.mp4 import VideoWriteError, read_frames, write_mp4
from engine.video import default_file_name, to_uint8_frames


def test_uint8_normalisation_truncates_like_the_official_writer():
    video = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]).view(1, 6, 1, 1).expand(3, 6, 1, 1)
    frames = to_uint8_frames(video)
    assert frames.shape == (6, 1, 1, 3)
    # (x + 1) / 2 * 255, truncated: 0 -> 127 (not 128), 0.999 -> 254.
    assert frames[:, 0, 0, 0].tolist() == [0, 0, 127, 254, 255, 255]


def test_write_read_back(tmp_path):
    frames = np.zeros((9, 32, 48, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 255, 9, dtype=np.uint8)[:, None, None]
    out = write_mp4(frames, tmp_path / "v.mp4", fps=16, metadata={"comment": "hello"})
    back = read_frames(out)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 3
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary file left


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises((VideoWriteError, OSError)):
        write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "blocker" / "v.mp4", fps=16)
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]


def test_default_name_follows_official_pattern_and_is_safe():
    when = datetime(2026, 1, 2, 3, 4, 5)
    name = default_file_name("flf2v-14B", "1280*720", 1, 1, 'a bird/plane: "fly"?', when)
    assert name == "flf2v-14B_1280x720_1_1_a_bird_plane___fly_20260102_030405.mp4"
    long = default_file_name("flf2v-14B", "1280*720", 8, 1, "鸟" * 200, when)
    assert len(long.encode()) <= 255 and long.endswith("_20260102_030405.mp4")
