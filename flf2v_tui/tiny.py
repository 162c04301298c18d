"""The embedded tiny checkpoint in FLF2V_HOME/models/tiny-flf2v, written on first use.

Writing it needs torch (engine.tiny's generator), so it is imported only when the folder is missing or stale;
a ready checkpoint is recognised from its marker file and the engine's own layout check, without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.checks import check_checkpoint
from engine.errors import BadInputError
from engine.tasks import TASKS
from storage.paths import Home

TINY_TASK = "flf2v-tiny"
LAYOUT = "official"


def tiny_ready(path: Path) -> bool:
    """The folder holds a complete tiny checkpoint of the engine's current format."""
    from engine.tiny import FORMAT, MARKER  # the package's top level is torch-free (tested)

    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
        check_checkpoint(path, TASKS[TINY_TASK])
    except (OSError, ValueError, BadInputError):
        return False
    return isinstance(marker, dict) and marker.get("format") == FORMAT and marker.get("layout") == LAYOUT


def ensure_tiny_checkpoint(home: Home) -> Path:
    """The tiny checkpoint's folder; engine.tiny writes it atomically, so concurrent first uses are safe."""
    target = home.tiny_model
    if tiny_ready(target):
        return target
    from engine.tiny import write_tiny_checkpoint

    home.models.mkdir(parents=True, exist_ok=True)
    try:
        return Path(write_tiny_checkpoint(target, layout=LAYOUT))
    except FileExistsError as exc:
        raise BadInputError(f"{exc}; move that folder aside, or give --ckpt_dir") from None
