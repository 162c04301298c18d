"""`flf2v videos verify`: rows whose file is gone or changed, videos on disk that no row knows, and the partial
files of writes that never finished (a rank killed while saving)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine.mp4 import PARTIAL_NAME
from flf2v_tui.catalogue.media import sha256_file
from storage.catalogue import all_videos


@dataclass(frozen=True)
class Finding:
    kind: str  # missing | changed | unknown | stray
    path: str
    video_id: int | None = None
    detail: str = ""


def verify(conn: sqlite3.Connection, videos_dir: Path) -> list[Finding]:
    findings: list[Finding] = []
    known: set[Path] = set()
    for video in all_videos(conn):
        path = Path(video["path"])
        known.add(path.resolve())
        if not path.is_file():
            findings.append(Finding("missing", str(path), video["id"], "the file is gone"))
            continue
        size = path.stat().st_size
        if size != video["size_bytes"] or sha256_file(path) != video["sha256"]:
            detail = f"{size} bytes now, {video['size_bytes']} catalogued; sha256 differs"
            findings.append(Finding("changed", str(path), video["id"], detail))
    if videos_dir.is_dir():
        for path in sorted(videos_dir.rglob("*.mp4")):
            partial = PARTIAL_NAME.match(path.name)
            if partial:
                pid = int(partial["pid"])
                if not psutil.pid_exists(pid):  # a live writer's file is a render still saving
                    detail = f"an unfinished video whose writer (pid {pid}) is gone; safe to delete"
                    findings.append(Finding("stray", str(path), None, detail))
                continue
            if path.name.startswith(".") or path.resolve() in known:
                continue
            findings.append(Finding("unknown", str(path), None, "no catalogue row knows this file"))
    return findings
