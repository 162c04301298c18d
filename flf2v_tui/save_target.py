"""Where a job's `--save_file` may go: an .mp4 anywhere but FLF2V_HOME's own folders (its videos/ excepted).

A render writes its mp4 only at the very end: a name that can never be written is refused at submit, not
found after an hour of GPU time. The worker never overwrites an existing file (it adds -a<attempt>).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.checks import check_save_file
from engine.errors import BadInputError
from storage.paths import Home


def _within(parts: tuple[str, ...], folder: Path) -> bool:
    """`parts` (of an absolute, resolved path) is `folder` or inside it; by parts, as Path.is_relative_to
    is slow (it builds the relative path) and a sweep asks 10,000 times."""
    return parts[: len(folder.parts)] == folder.parts


@dataclass(frozen=True)
class HomeFolders:
    """FLF2V_HOME's folders as they really are (links resolved): worked out once per submit, not per seed of
    a sweep of 10,000."""

    root: Path
    videos: Path  # the one folder of the home a video may go to
    own: tuple[Path, ...]  # jobs/ and models/, which may be links to another disk

    @classmethod
    def of(cls, home: Home) -> HomeFolders:
        return cls(home.root.resolve(), home.videos.resolve(), (home.jobs.resolve(), home.models.resolve()))

    def forbid(self, target: Path) -> bool:
        parts = target.parts
        within_home = _within(parts, self.root) and not _within(parts, self.videos)
        return within_home or any(_within(parts, folder) for folder in self.own)


def check_save_target(save_file: str, folders: HomeFolders) -> None:
    """`save_file` is absolute with symlinks and `..` resolved (submission.absolute makes it so), so a link or
    a relative name that leads into the home is judged by where it really writes."""
    # The engine's own check (no folder in its place, no file where its folder goes) finds the folder it goes in.
    folder = check_save_file(save_file)
    target = Path(save_file)
    if target.suffix.lower() != ".mp4":
        raise BadInputError(
            f"--save_file {target} must end in .mp4 (the video is an H.264 mp4), e.g. {target.stem}.mp4"
        )
    if folders.forbid(target):
        raise BadInputError(
            f"--save_file {target} is inside FLF2V_HOME's own folders ({folders.root}); "
            f"save it in {folders.videos} or anywhere outside {folders.root}"
        )
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(f"--save_file {target}: {folder} is not writable by you; save it elsewhere")
