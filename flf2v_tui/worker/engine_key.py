"""The engine key of a queued job: what must match for it to run in a warm group (DESIGN.md, "Warm groups").

engine.warm_protocol.key_values defines it (the engine_key flags of engine.flags, the world size, and the
checkpoint files' identity), so the worker and engine.serve, which refuses a job whose key differs, agree.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from engine.warm_protocol import key_argv, key_values

Key = dict[str, Any]


def job_values(job: dict[str, Any], device: str) -> dict[str, Any]:
    """A job row's engine values as one of its attempts gets them: the device is the worker's to set."""
    return {**job, "device": device}


def job_key(job: dict[str, Any], device: str) -> Key:
    return key_values(job_values(job, device), int(job["gpus"]))


def could_match(job: dict[str, Any], key: Key) -> bool:
    """A cheap first look (no walk of the checkpoint folder) that rules out most jobs of another key."""
    ckpt = job.get("ckpt_dir")
    return (
        int(job["gpus"]) == key.get("world_size")
        and job.get("task") == key.get("task")
        and bool(ckpt)
        and os.path.realpath(str(ckpt)) == key.get("ckpt_dir")
    )


def group_argv(job: dict[str, Any], device: str) -> list[str]:
    """The engine flags a group for this job's key is started with."""
    return key_argv(job_values(job, device))


def short(key: Key) -> str:
    """Eight hex digits that tell keys apart in what the worker says and `flf2v gpus` shows."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


def describe(key: Key) -> str:
    return f"{key.get('task')} x{key.get('world_size')} key {short(key)}"
