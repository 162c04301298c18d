"""The warm group's files: how the worker hands jobs to a loaded `python -m engine.serve` group (torch-free).

A group folder G holds (DESIGN.md, "Warm groups"; the app and engine.serve both use only these names):
- `ready.json`   rank 0, once loaded: Ready (load seconds, rank 0's pid, world size, the engine key).
- `jobs/<n:06d>.json`      the worker: job n (1, 2, 3, ... no gaps): JobFile (seq, attempt id, engine argv).
- `jobs/<n:06d>.cancel`    the worker: cancel job n; the ranks stop it at the same step boundary.
- `jobs/<n:06d>.end.json`  rank 0, after job n's done or error event: JobEnd (ok, class, healthy).
- `stop`         the worker (or rank 0 itself, when idle past --idle_exit_s): the group exits 0 once idle.
- `events.jsonl`, `rank<r>.log`: the group's own load-time events and log lines.

Every JSON file is written whole, to a temporary name then renamed, so a reader sees it complete or not at all.
A job whose engine key differs from the group's is refused (error event of class engine_error); the key is the
flags marked engine_key in engine.flags (never a list of our own), the world size and the checkpoint's identity.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.cli_args import build_parser
from engine.errors import BadInputError
from engine.flags import BY_NAME, ENGINE_KEY_FLAGS, PATH, argv_of
from engine.telemetry import CANCELLED

READY = "ready.json"
STOP = "stop"
JOBS = "jobs"
GROUP_EVENTS = "events.jsonl"
POLL_S = 0.1  # how often an idle rank looks for the next job or the stop file
# The classes after which the group stays loaded, when every rank saw the failure alike (engine.serve decides).
WARM_CLASSES: tuple[str, ...] = ("user_input", "engine_error", CANCELLED)


def jobs_dir(group: Path) -> Path:
    return Path(group) / JOBS


def job_path(group: Path, seq: int) -> Path:
    return jobs_dir(group) / f"{seq:06d}.json"


def cancel_path(group: Path, seq: int) -> Path:
    return jobs_dir(group) / f"{seq:06d}.cancel"


def end_path(group: Path, seq: int) -> Path:
    return jobs_dir(group) / f"{seq:06d}.end.json"


def ready_path(group: Path) -> Path:
    return Path(group) / READY


def stop_path(group: Path) -> Path:
    return Path(group) / STOP


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """`data` as JSON at `path`, complete or not at all (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, or None when there is none (yet) or it is not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Ready:
    load_seconds: float  # reading and laying out the models: what a warm job's start event says it saved
    pid: int  # rank 0's
    world_size: int
    key: dict[str, Any]
    # From rank 0's process start to loaded: the imports, the process group and the load, all of which a warm
    # job is spared (torchrun's own start aside); None when not known.
    startup_seconds: float | None = None

    def write(self, group: Path) -> None:
        write_json_atomic(ready_path(group), asdict(self))

    @classmethod
    def read(cls, group: Path) -> Ready | None:
        data = read_json(ready_path(group))
        if data is None:
            return None
        startup = data.get("startup_seconds")
        return cls(
            float(data["load_seconds"]),
            int(data["pid"]),
            int(data["world_size"]),
            dict(data["key"]),
            float(startup) if isinstance(startup, int | float) else None,
        )


@dataclass(frozen=True)
class JobFile:
    seq: int
    attempt_id: int
    argv: list[str]  # the whole engine.generate argument list a one-shot attempt would get

    def write(self, group: Path) -> None:
        write_json_atomic(job_path(group, self.seq), asdict(self))

    @classmethod
    def read(cls, group: Path, seq: int) -> JobFile | None:
        data = read_json(job_path(group, seq))
        if data is None:
            return None
        return cls(int(data["seq"]), int(data["attempt_id"]), [str(a) for a in data["argv"]])


@dataclass(frozen=True)
class JobEnd:
    seq: int
    ok: bool
    failure: str | None  # the failure class; "class" in the file
    healthy: bool  # False: the group exits right after writing this

    def write(self, group: Path) -> None:
        data = {"seq": self.seq, "ok": self.ok, "class": self.failure, "healthy": self.healthy}
        write_json_atomic(end_path(group, self.seq), data)

    @classmethod
    def read(cls, group: Path, seq: int) -> JobEnd | None:
        data = read_json(end_path(group, seq))
        if data is None:
            return None
        failure = data.get("class")
        return cls(int(data["seq"]), bool(data["ok"]), str(failure) if failure else None, bool(data["healthy"]))


def request_cancel(group: Path, seq: int) -> None:
    cancel_path(group, seq).parent.mkdir(parents=True, exist_ok=True)
    cancel_path(group, seq).touch()


def request_stop(group: Path) -> None:
    Path(group).mkdir(parents=True, exist_ok=True)
    stop_path(group).touch()


# ---- the engine key -------------------------------------------------------------------------------------


def checkpoint_identity(folder: str | os.PathLike[str]) -> str:
    """A short digest of every file under the checkpoint folder (relative path, size, mtime): a checkpoint
    rewritten in place is a different key, so a group never renders from stale weights."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(path, folder)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def key_values(args: argparse.Namespace | dict[str, Any], world_size: int) -> dict[str, Any]:
    """The engine key of parsed engine flags: the engine_key flags (offload_model's default resolved as the
    engine resolves it, paths made absolute), plus the world size and the checkpoint's identity."""
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    key: dict[str, Any] = {}
    for name in ENGINE_KEY_FLAGS:
        value = values.get(name, BY_NAME[name].default)
        if name == "offload_model" and value is None:
            value = world_size == 1  # engine.cli_args.apply_defaults
        if BY_NAME[name].kind == PATH and value:
            value = os.path.realpath(value)
        key[name] = value
    key["world_size"] = world_size
    ckpt = values.get("ckpt_dir")
    key["checkpoint"] = checkpoint_identity(ckpt) if ckpt and os.path.isdir(ckpt) else None
    return key


def key_of_argv(argv: list[str], world_size: int) -> dict[str, Any]:
    """The engine key of an engine.generate argument list."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        raise BadInputError(f"the engine arguments {argv!r} do not parse") from None
    return key_values(args, world_size)


def key_differences(group: dict[str, Any], job: dict[str, Any]) -> list[str]:
    """What differs, one `name: group's -> job's` each; empty when the job fits the group."""
    names = [*group, *(name for name in job if name not in group)]
    return [f"{name}: {group.get(name)!r} -> {job.get(name)!r}" for name in names if group.get(name) != job.get(name)]


def key_argv(values: dict[str, Any]) -> list[str]:
    """The engine_key flags of `values` as engine arguments (those a group is started with)."""
    return argv_of(values, ENGINE_KEY_FLAGS)


def serve_args(group: Path, key_flags: list[str], idle_exit_s: float | None = None) -> list[str]:
    """The arguments after `-m engine.serve` for a group in `group` loaded with the engine flags `key_flags`."""
    args = ["--group_dir", str(group), *key_flags, "--log_dir", str(group), "--events", str(Path(group) / GROUP_EVENTS)]
    if idle_exit_s is not None:
        args += ["--idle_exit_s", str(idle_exit_s)]
    return args
