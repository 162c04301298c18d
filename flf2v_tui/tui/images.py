"""Pictures in the terminal through textual-image: Kitty graphics or Sixel where the terminal answers that it
has them, coloured half cells otherwise, so thumbnails and previews also work over plain SSH.

textual-image asks the terminal what it supports when it is imported, which cannot happen once Textual owns
the terminal; the app imports this module before it starts. FLF2V_IMAGES=auto|halfcell|unicode|sixel|tgp
overrides the choice (the snapshot tests use halfcell, which draws the same everywhere).

Widgets are given decoded images (load_picture, called in a worker thread), never paths: a path would be
opened and decoded on the UI thread when the widget draws.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image as PILImage
from textual.widget import Widget

from storage.db import database_file_named
from storage.paths import Home


def _tmux_pane_title() -> str | None:
    """The title of the tmux pane this runs in (None outside tmux, or without a terminal). tmux takes the
    terminal-graphics probe below (an APC string, which tmux never answers) for a new pane title."""
    pane, out = os.environ.get("TMUX_PANE"), sys.__stdout__
    if not os.environ.get("TMUX") or not pane or out is None or not out.isatty():
        return None
    try:
        asked = subprocess.run(["tmux", "display-message", "-p", "-t", pane, "#{pane_title}"],
                               capture_output=True, text=True, timeout=2, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "flf2v"
    return asked.stdout.rstrip("\n")


def _set_title(title: str) -> None:
    """Set the pane's title (OSC 2), with no control character of the old title let through."""
    out, plain_title = sys.__stdout__, re.sub(r"[\x00-\x1f\x7f-\x9f]", "", title)
    if out is not None:
        out.write("\x1b]2;" + plain_title + "\x1b\\")
        out.flush()


_title = _tmux_pane_title()
from textual_image.widget import HalfcellImage, Image, SixelImage, TGPImage, UnicodeImage  # noqa: E402  (probes)

if _title is not None:
    _set_title(_title)  # the probe's APC string became the pane's title: put the old one back

MODES: dict[str, type[Widget]] = {
    "auto": Image,
    "halfcell": HalfcellImage,
    "unicode": UnicodeImage,
    "sixel": SixelImage,
    "tgp": TGPImage,
}


def load_picture(path: str | Path | None) -> PILImage.Image | None:
    """The picture at `path`, decoded (call it in a worker thread); None when there is none, it went, or it
    is not a picture Pillow reads (a preview caught mid-write)."""
    if not path or database_file_named(path, Home.resolve().db):
        return None  # a path from an events file could name the database: opening it drops the TUI's locks
    try:
        with PILImage.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None


def picture_class() -> type[Widget]:
    mode = os.environ.get("FLF2V_IMAGES", "auto").strip().lower() or "auto"
    return MODES.get(mode, Image)
