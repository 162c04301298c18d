"""The still-clip guard's image distance: the same picture re-encoded counts as the same, a moved subject not."""

from __future__ import annotations

from PIL import Image, ImageEnhance

from flf2v_tui.flf_guards import SAME_FRAMES_BELOW, flf_warnings, frame_difference
from tests.functional.engine_helpers import draw_frame


def test_the_same_picture_re_encoded_is_the_same_and_a_moved_bird_is_not(tmp_path):
    first = draw_frame(tmp_path / "first.png", (160, 96), 0.8, 0)
    moved = draw_frame(tmp_path / "moved.png", (160, 96), 0.2, 60)
    with Image.open(first) as image:
        ImageEnhance.Brightness(image.convert("RGB")).enhance(1.03).save(tmp_path / "again.jpg", quality=80)
        image.resize((320, 192)).save(tmp_path / "bigger.png")
    for twin in ("again.jpg", "bigger.png"):
        assert frame_difference(str(first), str(tmp_path / twin)) < SAME_FRAMES_BELOW, twin
    assert frame_difference(str(first), str(moved)) > SAME_FRAMES_BELOW
    codes = [w.code for w in flf_warnings({"first_frame": str(first), "last_frame": str(moved), "frame_num": 81})]
    assert codes == []
