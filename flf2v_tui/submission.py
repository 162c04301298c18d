"""Turning what a user typed into validated job specs, with the engine's own torch-free checks.

Used by `flf2v submit`, `flf2v retry` and the TUI's submit form, so all three accept and reject exactly
what `python -m engine.generate` would.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.checks import check_checkpoint, check_image
from engine.cli_args import apply_defaults, build_parser, validate
from engine.errors import BadInputError, about
from engine.flags import PATH_FLAGS
from engine.limits import SEED
from flf2v_tui.rank_capacity import check_fits_here
from flf2v_tui.save_target import HomeFolders, check_save_target
from storage.db import database_file_named
from storage.jobs import copy_input, require_job
from storage.ops import requeue
from storage.paths import Home
from storage.spec import ENGINE_FLAGS, RETRYABLE_CLASSES, JobSpec, QueueSettings, check_values, engine_argv
from storage.states import FINISHED

MAX_SWEEP = 10_000
# Queued renders write a latent preview every this many steps unless told otherwise (the engine alone: off).
QUEUE_PREVIEW_EVERY = 5


@dataclass(kw_only=True)
class QueueOptions(QueueSettings):
    """What submit, videos rerun and the form ask of the queue: JobSpec's queue settings (with its defaults,
    storage.spec.QueueSettings), and whether --gpus is checked against this machine."""

    # The job is for a worker elsewhere, or one started with other --gpus or --cpu-slots (the demo's): --gpus
    # is checked against its bound only, not against what a worker started here without options would have.
    other_worker: bool = False


def parse_seeds(seeds: str | None, seed_range: str | None) -> list[int] | None:
    """`--seeds 1,2,3` or `--seed-range 10..19` (inclusive); None when neither was given."""
    if seeds and seed_range:
        raise BadInputError("give either --seeds or --seed-range, not both")
    if seeds:
        try:
            values = [int(s) for s in seeds.replace(" ", "").split(",") if s]
        except ValueError:
            raise BadInputError(f"--seeds {seeds!r} must be whole numbers separated by commas, e.g. 1,2,3") from None
    elif seed_range:
        low, sep, high = seed_range.partition("..")
        try:
            first, last = int(low), int(high)
        except ValueError:
            first = last = -1
        if not sep or first < 0 or last < first:
            raise BadInputError(f"--seed-range {seed_range!r} must be A..B with 0 <= A <= B, e.g. 10..19")
        problem = SEED.problem(last)
        if problem:
            raise BadInputError(f"--seed-range {problem}")
        if last - first >= MAX_SWEEP:  # counted before the list is made: 0..10**12 would fill the memory
            raise BadInputError(f"a sweep of {last - first + 1} jobs is more than the {MAX_SWEEP} allowed at once")
        values = list(range(first, last + 1))
    else:
        return None
    if not values:
        raise BadInputError("--seeds is empty; give at least one seed")
    if any(v < 0 for v in values):
        raise BadInputError("seeds must be 0 or more (-1, a random seed, is what you get without --seeds)")
    problem = next((p for p in map(SEED.problem, values) if p), None)
    if problem:
        raise BadInputError(f"--seeds {problem}")
    if len(values) > MAX_SWEEP:
        raise BadInputError(f"a sweep of {len(values)} jobs is more than the {MAX_SWEEP} allowed at once")
    return values


def parse_retry_on(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    for c in classes:
        if c == "user_input":
            raise BadInputError("--retry-on user_input is not allowed: bad input fails the same way every time")
        if c not in RETRYABLE_CLASSES:
            raise BadInputError(f"--retry-on: unknown failure class {c!r}; choose from {', '.join(RETRYABLE_CLASSES)}")
    return classes


def expand_user(path: str | Path) -> Path:
    """`~` and `~name` expanded; a user that does not exist is bad input (Path raises RuntimeError)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise BadInputError(f"{path}: no such user, so its ~ cannot be expanded") from None


def absolute(path: str | Path, base: Path | None = None) -> str:
    p = expand_user(path)
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    return str(p.resolve())


def _parse_engine(values: dict[str, Any]) -> argparse.Namespace:
    """Parse through the engine's own argparse parser, so flag types and booleans mean the same."""
    parser = build_parser(prog="flf2v submit")
    parser.exit_on_error = False  # a bad value raises ArgumentError, which names the flag it is about
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(engine_argv(values))
    except argparse.ArgumentError as exc:
        raise BadInputError(str(exc), field=(exc.argument_name or "").removeprefix("--") or None) from None
    except SystemExit:
        message = err.getvalue().strip().splitlines()
        text = message[-1] if message else "invalid flags"
        raise BadInputError(text.removeprefix("flf2v submit: error: ").removesuffix(" (see --help)")) from None


def check_engine_values(values: dict[str, Any], world_size: int) -> argparse.Namespace:
    """Every check the engine makes before loading weights; raises BadInputError with one line."""
    if world_size < 1:
        raise BadInputError(f"--gpus {world_size} must be at least 1", field="gpus")
    ns = _parse_engine(values)
    apply_defaults(ns, world_size)
    task = validate(ns, world_size)
    frames = (("first_frame", "first frame"), ("last_frame", "last frame"))
    for flag, what in frames:
        # Read as an image, the queue's own database would be opened and closed beside this process's
        # connections, which drops their locks on it (see storage.db).
        frame = getattr(ns, flag)
        if database_file_named(frame, Home.resolve().db):
            raise BadInputError(f"{what} {frame} is the queue's own database, not an image", field=flag)
    for flag, what in frames:
        with about(flag):
            check_image(getattr(ns, flag), what)
    with about("ckpt_dir"):
        check_checkpoint(ns.ckpt_dir, task)
    return ns


def _resolved(ns: argparse.Namespace, given_neg: str | None) -> dict[str, Any]:
    values = {name: getattr(ns, name) for name in ENGINE_FLAGS}
    values["neg_prompt"] = given_neg if given_neg and given_neg.strip() else None
    return values


def _save_file_for(template: str | None, seed: int, sweep: bool) -> str | None:
    if template is None:
        return None
    if sweep and "{seed}" not in template:
        raise BadInputError(
            "with several seeds, --save_file must contain {seed}, e.g. out/bird-{seed}.mp4", field="save_file"
        )
    return template.replace("{seed}", str(seed))


def check_queue(queue: QueueOptions) -> None:
    """The queue's numbers within their bounds (storage.spec), and ranks this machine can run. A job of several
    nodes is for a Slurm worker (`flf2v worker --backend slurm`), so its GPUs per node are not checked here."""
    check_values(asdict(queue))
    if not queue.other_worker and queue.nodes == 1:
        check_fits_here(queue.gpus)


def build_specs(
    given: dict[str, Any],
    queue: QueueOptions,
    seeds: Sequence[int] | None = None,
    base: Path | None = None,
    home: Home | None = None,
) -> list[JobSpec]:
    """Validated job specs: one, or one per seed. `given` holds the engine flags the user set; `home` is the
    FLF2V_HOME they go to (default: this process's)."""
    # Numbers and texts first. The engine's validate() checks its own flags again (it is the gate of a run by
    # hand) and JobSpec the finished specs, but this pass is the only one before absolute() resolves the paths
    # (a NUL or a lone surrogate raises there), and the form and `videos rerun` have no CLI callbacks before it.
    check_values(given)
    check_queue(queue)
    home = home or Home.resolve()
    values = {k: v for k, v in given.items() if v is not None}
    values.setdefault("preview_every", QUEUE_PREVIEW_EVERY)
    for flag in PATH_FLAGS:
        if values.get(flag):
            with about(flag):
                values[flag] = absolute(values[flag], base)
    template = values.pop("save_file", None)
    probe = {**values, "save_file": None}
    ns = check_engine_values(probe, queue.gpus * queue.nodes)  # the world: every rank of every node
    resolved = _resolved(ns, values.get("neg_prompt"))
    seed_list = list(seeds) if seeds is not None else [resolved["base_seed"]]
    folders = HomeFolders.of(home) if template else None
    specs = []
    for seed in seed_list:
        if seed < 0:  # drawn now so the job's row is a recipe that reproduces the video
            seed = random.randint(0, sys.maxsize)
        save_file = _save_file_for(template, seed, len(seed_list) > 1)
        if save_file and folders:
            with about("save_file"):
                check_save_target(save_file, folders)
        spec_values = {**resolved, "base_seed": seed, "save_file": save_file}
        specs.append(
            JobSpec(
                **spec_values,
                first_frame_src=resolved["first_frame"],
                last_frame_src=resolved["last_frame"],
                gpus=queue.gpus,
                nodes=queue.nodes,
                priority=queue.priority,
                labels=list(queue.labels),
                after=list(queue.after),
                after_any=list(queue.after_any),
                after_fail=list(queue.after_fail),
                held=queue.held,
                max_retries=queue.max_retries,
                retry_on=queue.retry_on,
                retry_backoff=queue.retry_backoff,
            )
        )
    return specs


def retry_changes(
    job: dict[str, Any],
    given: dict[str, Any],
    gpus: int | None,
    home: Home | None = None,
    other_worker: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Validate a finished job's stored recipe with the user's changes; returns the column updates and the
    list of new frame sources that must be copied in (the stored copies are used for unchanged frames)."""
    values = {name: job[name] for name in ENGINE_FLAGS}
    changed = {k: v for k, v in given.items() if v is not None}
    check_values({**changed, "gpus": gpus})
    for flag in PATH_FLAGS:
        if changed.get(flag):
            with about(flag):
                changed[flag] = absolute(changed[flag])
    values.update(changed)
    if values.get("base_seed", -1) < 0:
        values["base_seed"] = random.randint(0, sys.maxsize)
    nodes = int(job.get("nodes") or 1)
    world = (gpus or job["gpus"]) * nodes
    # An unchanged count was checked (or waived) when the job was submitted; one of several nodes is Slurm's.
    if gpus and not other_worker and nodes == 1:
        check_fits_here(gpus)
    ns = check_engine_values({**values, "save_file": None}, world)
    if values.get("save_file"):
        with about("save_file"):
            check_save_target(values["save_file"], HomeFolders.of(home or Home.resolve()))
    updates = {name: getattr(ns, name) for name in ENGINE_FLAGS if name in changed}
    updates["neg_prompt"] = values.get("neg_prompt") or None
    updates["save_file"] = values.get("save_file")
    updates["base_seed"] = values["base_seed"]
    if gpus:
        updates["gpus"] = gpus
    new_frames = [flag for flag in ("first_frame", "last_frame") if flag in changed]
    return updates, new_frames


def fill_tiny_checkpoint(home: Home, given: dict[str, Any]) -> None:
    """flf2v-tiny without --ckpt_dir means the embedded checkpoint, written on first use."""
    if given.get("task") == "flf2v-tiny" and not given.get("ckpt_dir"):
        from flf2v_tui.tiny import ensure_tiny_checkpoint

        with about("ckpt_dir"):
            given["ckpt_dir"] = str(ensure_tiny_checkpoint(home))


def copy_new_frames(
    home: Home, job: dict[str, Any], flags: list[str], updates: dict[str, Any], tag: str = ""
) -> list[Path]:
    """Copy the frames named in `flags` into the job's inputs as `<role>-<tag>.ext` (default tag: the next
    attempt's number); `updates` then points at the copies. All copies or none."""
    tag = tag or str(job["attempts_count"] + 1)
    copies = []
    inputs = home.inputs_dir(job["id"])
    inputs.mkdir(parents=True, exist_ok=True)
    for flag in flags:
        source = Path(updates[flag])
        role = flag.split("_")[0]
        target = inputs / f"{role}-{tag}{source.suffix.lower() or '.img'}"
        try:
            copy_input(source, target, inputs)
        except BaseException:
            for copy in copies:  # nothing half-made: the first frame's copy goes with a failed second
                copy.unlink(missing_ok=True)
            raise
        updates[f"{flag}_src"] = str(source)
        updates[flag] = str(target)
        copies.append(target)
    return copies


def retry_job(
    conn: sqlite3.Connection,
    home: Home,
    job_id: int,
    given: dict[str, Any],
    gpus: int | None = None,
    priority: int | None = None,
    hold: bool = False,
    other_worker: bool = False,
) -> str:
    """Queue a finished job again with the user's changes (validated like a submit); returns what happened."""
    check_values({"priority": priority})
    job = require_job(conn, job_id)
    if job["state"] not in FINISHED:
        raise BadInputError(f"job {job_id} is {job['state']}; only finished jobs can be retried")
    updates, new_frames = retry_changes(job, given, gpus, home, other_worker)
    if priority is not None:
        updates["priority"] = priority
    if hold:
        updates["held"] = 1
    return write_with_frames(home, job, new_frames, updates, lambda: requeue(conn, job_id, updates))


def write_with_frames(
    home: Home,
    job: dict[str, Any],
    new_frames: list[str],
    updates: dict[str, Any],
    write: Callable[[], str],
    tag: str = "",
) -> str:
    """Copy a job's new frames in (copy_new_frames, which points `updates` at them), then `write` the
    updates; if that fails, the copies go again. Returns what `write` says."""
    copies = copy_new_frames(home, job, new_frames, updates, tag)
    try:
        return write()
    except BaseException:
        for copy in copies:
            copy.unlink(missing_ok=True)
        raise
