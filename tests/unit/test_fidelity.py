"""engine.fidelity: the PSNR of a render's end frames against its inputs, at the input's resolution."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from engine.fidelity import PSNR_CAP_DB, endpoint_psnr, psnr


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(np.uint8)


def test_identical_frames_are_capped_and_noise_gives_the_textbook_figure():
    frame = gradient(48, 32)
    assert psnr(frame, Image.fromarray(frame)) == PSNR_CAP_DB
    noisy = frame.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, frame.shape)
    noisy = noisy.clip(0, 255).astype(np.uint8)
    mse = np.mean((noisy.astype(np.float64) - frame) ** 2)
    assert psnr(noisy, Image.fromarray(frame)) == round(10 * math.log10(255**2 / mse), 2)


def test_measured_at_the_inputs_resolution_on_the_videos_aspect():
    """A wide input and a square video: the video matches the input's centre, at the input's size."""
    wide = gradient(256, 128)
    centre = Image.fromarray(wide).crop((64, 0, 192, 128))
    generated = np.asarray(centre.resize((32, 32), Image.Resampling.BICUBIC))
    squeezed = np.asarray(Image.fromarray(wide).resize((32, 32), Image.Resampling.BICUBIC))
    assert psnr(generated, Image.fromarray(wide)) > 30 > psnr(squeezed, Image.fromarray(wide))


def test_endpoint_psnr_reads_both_inputs(tmp_path):
    first, last = gradient(64, 64), 255 - gradient(64, 64)
    Image.fromarray(first).save(tmp_path / "a.png")
    Image.fromarray(last).save(tmp_path / "b.png")
    frames = np.stack([first, first, first])
    result = endpoint_psnr(frames, str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert result["psnr_first"] == PSNR_CAP_DB and result["psnr_last"] == psnr(first, Image.fromarray(last))


def test_an_input_gone_by_the_end_is_no_failure(tmp_path):
    frame = gradient(16, 16)
    Image.fromarray(frame).save(tmp_path / "a.png")
    assert endpoint_psnr(np.stack([frame]), str(tmp_path / "a.png"), str(tmp_path / "gone.png")) == {}
