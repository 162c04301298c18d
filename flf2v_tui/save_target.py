"""Where a job's `--save_file` may go: an .mp4 anywhere but FLF2V_HOME's own folders (its videos/ excepted).

A render writes its mp4 only at the very end: a name that can never be written is refused at submit, not
found after an hour of GPU time. The worker never overwrites an existing file (it adds -a<attempt>).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.checks import check_save_file, path_exists
from engine.errors import BadInputError
from storage.paths import Home


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_save_target(save_file: str, home: Home) -> None:
    """`save_file` is absolute with symlinks and `..` resolved (submission.absolute makes it so), so a link or
    a relative name that leads into the home is judged by where it really writes."""
    check_save_file(save_file)  # the engine's own check: no folder in its place, no file where its folder goes
    target = Path(save_file)
    if target.suffix.lower() != ".mp4":
        raise BadInputError(
            f"--save_file {target} must end in .mp4 (the video is an H.264 mp4), e.g. {target.stem}.mp4"
        )
    root, videos = home.root.resolve(), home.videos.resolve()
    # jobs/ and models/ may be links to another disk, so each is resolved on its own, not only the root.
    own = [home.jobs.resolve(), home.models.resolve()]
    if any(_within(target, folder) for folder in own) or (_within(target, root) and not _within(target, videos)):
        raise BadInputError(
            f"--save_file {target} is inside FLF2V_HOME's own folders ({root}); "
            f"save it in {videos} or anywhere outside {root}"
        )
    folder = next((p for p in target.parents if path_exists(p, "--save_file's folder")), None)
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(f"--save_file {target}: {folder} is not writable by you; save it elsewhere")
