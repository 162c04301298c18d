"""Where flf2v keeps its files: the FLF2V_HOME layout of the design card."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "flf2v.db"
TINY_MODEL = "tiny-flf2v"


def default_home() -> Path:
    """FLF2V_HOME, else $XDG_DATA_HOME/flf2v, else ~/.local/share/flf2v."""
    explicit = os.environ.get("FLF2V_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "flf2v"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike[str] | None = None) -> Home:
        return cls(Path(root).expanduser().resolve() if root else default_home().resolve())

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def tiny_model(self) -> Path:
        return self.models / TINY_MODEL

    def job_dir(self, job_id: int) -> Path:
        return self.jobs / str(job_id)

    def inputs_dir(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "inputs"

    def attempt_dir(self, job_id: int, number: int) -> Path:
        return self.job_dir(job_id) / f"attempt-{number}"

    def ensure(self) -> Home:
        """Create the folders; the root is private to the user because prompts and inputs are personal."""
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # a shared home owned by someone else keeps its mode
            os.chmod(self.root, 0o700)
        for folder in (self.jobs, self.videos, self.models):
            folder.mkdir(exist_ok=True)
        return self
