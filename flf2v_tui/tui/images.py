"""Pictures in the terminal through textual-image: Kitty graphics or Sixel where the terminal answers that it
has them, coloured half cells otherwise, so thumbnails and previews also work over plain SSH.

textual-image asks the terminal what it supports when it is imported, which cannot happen once Textual owns
the terminal; the app imports this module before it starts. FLF2V_IMAGES=auto|halfcell|unicode|sixel|tgp
overrides the choice (the snapshot tests use halfcell, which draws the same everywhere).
"""

from __future__ import annotations

import os

from textual.widget import Widget
from textual_image.widget import HalfcellImage, Image, SixelImage, TGPImage, UnicodeImage

MODES: dict[str, type[Widget]] = {
    "auto": Image,
    "halfcell": HalfcellImage,
    "unicode": UnicodeImage,
    "sixel": SixelImage,
    "tgp": TGPImage,
}


def picture_class() -> type[Widget]:
    mode = os.environ.get("FLF2V_IMAGES", "auto").strip().lower() or "auto"
    return MODES.get(mode, Image)
