"""The FLF2V conditioning tensors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from engine import conditioning as C


def test_image_to_tensor_range():
    t = C.image_to_tensor(Image.new("RGB", (4, 2), (255, 0, 128)))
    assert t.shape == (3, 2, 4)
    assert t[0].eq(1).all() and t[1].eq(-1).all()
    assert abs(t[2, 0, 0].item() - (128 / 255 - 0.5) / 0.5) < 1e-6


@pytest.mark.parametrize("frames", [5, 9, 81])
def test_frame_mask_marks_first_and_last_latent_frames(frames):
    mask = C.frame_mask(frames, 3, 5)
    t = C.latent_frames(frames)
    assert mask.shape == (4, t, 3, 5)
    assert mask[:, 0].eq(1).all()  # the first frame fills the whole first latent frame
    assert mask[:3, -1].eq(0).all() and mask[3, -1].eq(1).all()  # the last frame is the last of its four
    if t > 2:
        assert mask[:, 1:-1].eq(0).all()


def test_sequence_length_rounds_up_for_sequence_parallel():
    assert C.sequence_length(81, 90, 160, (1, 2, 2)) == 21 * 45 * 80
    assert C.sequence_length(9, 6, 6, (1, 2, 2), sp_size=4) == 28  # 27 tokens -> 28


def test_last_frame_same_size_untouched():
    first, last = torch.rand(3, 8, 12), torch.rand(3, 8, 12)
    assert C.match_last_frame(first, last) is last


def test_last_frame_is_cover_resized_then_center_cropped():
    first = torch.zeros(3, 64, 128)
    # A square last frame with a bright centre column: it must survive in the middle after cover + crop.
    last = torch.zeros(3, 32, 32)
    last[:, :, 15:17] = 1.0
    out = C.match_last_frame(first, last)
    assert out.shape == (3, 64, 128)
    column = out[0].mean(dim=0)
    assert column.argmax().item() in range(60, 68)


def test_condition_video_layout():
    first, last = torch.full((3, 10, 10), 0.5), torch.full((3, 10, 10), -0.5)
    video = C.condition_video(first, last, 9, 16, 16)
    assert video.shape == (3, 9, 16, 16)
    assert torch.allclose(video[:, 0], torch.tensor(0.5)) and torch.allclose(video[:, -1], torch.tensor(-0.5))
    assert video[:, 1:-1].eq(0).all()


def test_clip_pixels_normalised():
    px = C.clip_pixels([torch.ones(3, 30, 40), -torch.ones(3, 30, 40)], 28)
    assert px.shape == (2, 3, 28, 28)
    expected = (1 - torch.tensor(C.CLIP_MEAN)) / torch.tensor(C.CLIP_STD)
    assert torch.allclose(px[0, :, 5, 5], expected, atol=1e-5)


def test_clean_prompt_matches_official_whitespace_cleaning():
    assert C.clean_prompt("  a\n\tbird &amp;amp; sky  ") == "a bird & sky"
