"""Which program can show a video on this machine, if any: none over plain SSH, where there is no display."""

from __future__ import annotations

import os
import shutil
import sys

PLAYERS = ("xdg-open", "mpv", "vlc", "ffplay")


def player_command(path: str) -> list[str] | None:
    if sys.platform == "darwin":
        return ["open", path]
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None
    for program in PLAYERS:
        found = shutil.which(program)
        if found:
            return [found, path]
    return None
