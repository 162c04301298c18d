"""MP4 writing: normalisation, atomic write, read-back check, file names."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import torch

from engine import mp4
from engine.mp4 import VideoWriteError, probe, read_frames, write_mp4
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


def test_probe_reads_codec_pixel_format_rate_size_and_frames(tmp_path):
    out = write_mp4(np.zeros((5, 32, 48, 3), np.uint8), tmp_path / "v.mp4", fps=16)
    info = probe(out)
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 16.0)
    assert (info.width, info.height, info.frames) == (48, 32, 5)


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(VideoWriteError, match="could not write"):
        write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "blocker" / "v.mp4", fps=16)
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]


def test_a_short_read_back_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    real = mp4.count_frames
    monkeypatch.setattr(mp4, "count_frames", lambda path: real(path) - 1)
    with pytest.raises(VideoWriteError, match="wrote 5 frames but the file holds 4"):
        write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "v.mp4", fps=16)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


def test_a_signal_mid_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    # The engine turns SIGTERM into an exception that is not an Exception (engine.failures.Killed).
    def interrupted(path: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(mp4, "count_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "v.mp4", fps=16)
    assert list(tmp_path.iterdir()) == []


def test_default_name_follows_official_pattern_and_is_safe():
    when = datetime(2026, 1, 2, 3, 4, 5)
    name = default_file_name("flf2v-14B", "1280*720", 1, 1, 'a bird/plane: "fly"?', when)
    assert name == "flf2v-14B_1280x720_1_1_a_bird_plane___fly_20260102_030405.mp4"
    long = default_file_name("flf2v-14B", "1280*720", 8, 1, "鸟" * 200, when)
    assert len(long.encode()) <= 255 and long.endswith("_20260102_030405.mp4")
