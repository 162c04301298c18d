"""The video catalogue: one row per verified video, searchable by prompt, tags and notes (FTS5)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from engine.errors import BadInputError
from storage.db import write_tx

JSON_COLUMNS = ("recipe", "stage_seconds", "peak_memory", "tags", "files")
USER_FIELDS = ("rating", "favourite", "tags", "notes")
SORTS = {
    "new": "v.created_at DESC, v.id DESC",
    "old": "v.created_at ASC, v.id ASC",
    "rating": "COALESCE(v.rating, 0) DESC, v.created_at DESC",
    "prompt": "v.prompt COLLATE NOCASE ASC, v.id ASC",
}


@dataclass
class VideoFilter:
    text: str = ""
    min_rating: int | None = None
    favourite: bool | None = None
    since: float | None = None
    until: float | None = None
    task: str | None = None
    tag: str | None = None
    sort: str = "new"
    limit: int | None = None


def decode(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """A row as plain values: JSON columns parsed, flags as booleans."""
    video = dict(row)
    for column in JSON_COLUMNS:
        if isinstance(video.get(column), str):
            video[column] = json.loads(video[column])
    for column in ("favourite", "t5_fsdp", "dit_fsdp"):
        if video.get(column) is not None:
            video[column] = bool(video[column])
    return video


def fts_query(text: str) -> str:
    """What a person types, as an FTS5 query: every word must match, each as a prefix, operators inert."""
    words = [w for w in text.replace('"', " ").split() if w]
    return " ".join(f'"{w}"*' for w in words)


def _encode(column: str, value: Any) -> Any:
    return json.dumps(value, sort_keys=True, ensure_ascii=False) if column in JSON_COLUMNS else value


def add_video(conn: sqlite3.Connection, values: dict[str, Any]) -> int:
    row = {k: _encode(k, v) for k, v in values.items()}
    columns = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    with write_tx(conn):
        existing = conn.execute("SELECT id FROM videos WHERE path = ?", (row["path"],)).fetchone()
        if existing is not None:
            # The same file catalogued again (a reconciled attempt): keep the row and its user fields.
            return int(existing[0])
        cur = conn.execute(f"INSERT INTO videos ({columns}) VALUES ({marks})", row)
    return int(cur.lastrowid or 0)


def get_video(conn: sqlite3.Connection, video_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
    return decode(row) if row else None


def require_video(conn: sqlite3.Connection, video_id: int) -> dict[str, Any]:
    video = get_video(conn, video_id)
    if video is None:
        raise BadInputError(f"there is no video {video_id} in the catalogue (see flf2v videos ls)")
    return video


def video_of_job(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM videos WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,)).fetchone()
    return decode(row) if row else None


def search(conn: sqlite3.Connection, flt: VideoFilter) -> list[dict[str, Any]]:
    if flt.sort not in SORTS:
        raise BadInputError(f"unknown sort {flt.sort!r}; choose from {', '.join(SORTS)}")
    where, params = [], []
    query = fts_query(flt.text)
    if query:
        where.append("v.id IN (SELECT rowid FROM videos_fts WHERE videos_fts MATCH ?)")
        params.append(query)
    if flt.min_rating is not None:
        where.append("v.rating >= ?")
        params.append(flt.min_rating)
    if flt.favourite is not None:
        where.append("v.favourite = ?")
        params.append(int(flt.favourite))
    if flt.since is not None:
        where.append("v.created_at >= ?")
        params.append(flt.since)
    if flt.until is not None:
        where.append("v.created_at < ?")
        params.append(flt.until)
    if flt.task:
        where.append("v.task = ?")
        params.append(flt.task)
    if flt.tag:
        where.append("EXISTS (SELECT 1 FROM json_each(v.tags) WHERE json_each.value = ?)")
        params.append(flt.tag)
    sql = "SELECT v.* FROM videos v"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {SORTS[flt.sort]}"
    if flt.limit:
        sql += f" LIMIT {int(flt.limit)}"
    return [decode(r) for r in conn.execute(sql, params)]


def all_videos(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [decode(r) for r in conn.execute("SELECT * FROM videos ORDER BY id")]


def update_user_fields(conn: sqlite3.Connection, video_id: int, **changes: Any) -> dict[str, Any]:
    """Set rating, favourite, tags or notes; returns the updated row."""
    unknown = set(changes) - set(USER_FIELDS)
    if unknown:
        raise ValueError(f"not a user field: {sorted(unknown)}")
    rating = changes.get("rating")
    if rating is not None and not 1 <= int(rating) <= 5:
        raise BadInputError(f"rating {rating} must be from 1 to 5 (0 clears it)")
    values = {k: _encode(k, v) for k, v in changes.items()}
    if "favourite" in values:
        values["favourite"] = int(bool(values["favourite"]))
    with write_tx(conn):
        if conn.execute("SELECT 1 FROM videos WHERE id = ?", (video_id,)).fetchone() is None:
            raise BadInputError(f"there is no video {video_id} in the catalogue (see flf2v videos ls)")
        if values:
            assignments = ", ".join(f"{k} = :{k}" for k in values)
            conn.execute(f"UPDATE videos SET {assignments} WHERE id = :id", {**values, "id": video_id})
    return require_video(conn, video_id)


def delete_video(conn: sqlite3.Connection, video_id: int) -> None:
    with write_tx(conn):
        conn.execute("DELETE FROM videos WHERE id = ?", (video_id,))
