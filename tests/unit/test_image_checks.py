"""Image checks that run before any weights load."""

from __future__ import annotations

import pytest
from PIL import Image

from engine.checks import check_image
from engine.errors import BadInputError


def test_good_image(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "red").save(p)
    info = check_image(p)
    assert (info.width, info.height) == (40, 30)


def test_missing_empty_corrupt_truncated(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        check_image(tmp_path / "nope.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        check_image(empty)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(BadInputError, match="not an image format"):
        check_image(junk)
    good = tmp_path / "good.png"
    Image.effect_noise((256, 256), 50).convert("RGB").save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        check_image(cut)


def test_decompression_bomb_rejected(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("1", (4000, 4000)).save(p)  # 16 Mpx, a few kB on disk
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(BadInputError, match=r"safety limit|decompression bomb"):
        check_image(p)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(BadInputError, match="not a file"):
        check_image(tmp_path)
