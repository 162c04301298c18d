"""A missing or empty flf2v.db beside job folders is a lost queue, not a new one.

SQLite takes a zero-byte file for an empty database, and connect() writes a fresh schema into it (or into a
new file where there was none): every job whose folder is in jobs/ would be forgotten without a word. So a
home is opened only after this check, and starting over takes the user's say-so (`flf2v --force ...`).
"""

from __future__ import annotations

import os

from storage.db import DatabaseError
from storage.paths import Home


class LostQueueError(DatabaseError):
    """The database is missing or empty while job folders exist; the message says how to go on."""


def job_folder_count(home: Home) -> int:
    """Folders of jobs (jobs/<id>/); a staging folder or an orphan kept by an earlier start-over is none."""
    try:
        with os.scandir(home.jobs) as entries:
            return sum(1 for e in entries if e.name.isdigit() and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return 0


def refuse_lost_queue(home: Home, command: str = "<command>", force: bool = False) -> None:
    """Raise LostQueueError when flf2v.db is missing or empty (0 bytes) while job folders exist, unless `force`.

    Only stat()s the database: this process may already hold connections to it, and opening and closing the
    file outside SQLite would drop their locks (see storage.db)."""
    try:
        size: int | None = os.stat(home.db).st_size
    except FileNotFoundError:
        size = None
    if size or force:
        return
    count = job_folder_count(home)
    if not count:
        return
    state = "missing" if size is None else "empty"
    folders = "1 job folder exists" if count == 1 else f"{count} job folders exist"
    raise LostQueueError(
        f"the database {home.db} is {state} while {folders} in {home.jobs}; a new queue would forget those jobs "
        f"(restore it, or run again with --force to start a new queue: flf2v --force {command} ...)"
    )
