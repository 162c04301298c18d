"""`flf2v videos …`: the catalogue of finished renders: search, inspect, rate, tag, verify, re-run."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.errors import BadInputError
from flf2v_tui.catalogue.views import ls_text, show_text
from flf2v_tui.commands.common import handles_errors, open_home, parse_ids, print_json
from flf2v_tui.commands.options import (
    echo_queued,
    engine_values,
    queue_seeds,
    queue_values,
    with_engine_options,
    with_queue_options,
)
from flf2v_tui.term import echo, terminal_width
from storage.catalogue import SORTS, VideoFilter, delete_video, require_video, search


def save_user_fields(conn: Any, video_id: int, **changes: Any) -> dict[str, Any]:
    # Imported on use: the catalogue's media code pulls in numpy and PIL, which `flf2v ls` must not pay for.
    from flf2v_tui.catalogue.record import save_user_fields as save

    return save(conn, video_id, **changes)


videos_app = typer.Typer(
    name="videos",
    help="The catalogue of finished videos: search, show, open, rate, tag, verify, re-run.",
    epilog="Example:\n\n  flf2v videos ls bird --rating 4\n\n  flf2v videos show 7",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str | None, flag: str) -> float | None:
    """`2026-11-24`, `2026-11-24 18:00`, `today`, `yesterday`, or an age such as `12h`, `3d`, `2w`."""
    if not text:
        return None
    word = text.strip().lower()
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if word == "today":
        return midnight
    if word == "yesterday":
        return midnight - 86400
    if word[:-1].isdigit() and word[-1] in _UNITS:
        return time.time() - int(word[:-1]) * _UNITS[word[-1]]
    for pattern in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text.strip(), pattern).timestamp()
        except ValueError:
            continue
    raise BadInputError(f"{flag} {text!r}: use a date (2026-11-24), today, yesterday, or an age (12h, 3d, 2w)")


@handles_errors
def ls(
    text: Annotated[str | None, typer.Argument(help="words to find in prompts, tags and notes")] = None,
    rating: Annotated[int | None, typer.Option("--rating", "-r", help="at least this rating (1-5)")] = None,
    fav: Annotated[bool, typer.Option("--fav", help="only favourites")] = False,
    since: Annotated[str | None, typer.Option("--since", help="made since: 2026-11-24, today, 3d ...")] = None,
    until: Annotated[str | None, typer.Option("--until", help="made before: 2026-11-25, yesterday, 12h ...")] = None,
    task: Annotated[str | None, typer.Option("--task", help="only this task, e.g. flf2v-14B")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="only videos with this exact tag")] = None,
    sort: Annotated[str, typer.Option("--sort", help=f"order: {', '.join(SORTS)}")] = "new",
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="at most this many")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List catalogued videos, newest first; words search prompts, tags and notes (full-text, prefixes)."""
    if rating is not None and not 1 <= rating <= 5:
        raise BadInputError(f"--rating {rating} must be from 1 to 5")
    flt = VideoFilter(
        text=text or "", min_rating=rating, favourite=True if fav else None, since=parse_when(since, "--since"),
        until=parse_when(until, "--until"), task=task, tag=tag, sort=sort, limit=limit,
    )  # fmt: skip
    _, conn = open_home()
    videos = search(conn, flt)
    if json_out:
        print_json(videos)
    elif videos:
        text, left_out = ls_text(videos, terminal_width())
        typer.echo(text)
        if left_out:
            names = ", ".join(name.lower() for name in left_out)
            echo(f"({names} left out: terminal too narrow; flf2v videos show ID or --json shows all)", err=True)
    else:
        echo("no videos match" if text or rating or fav or since or until or task or tag else "no videos yet")


@handles_errors
def show(
    video_id: Annotated[int, typer.Argument(help="video id (flf2v videos ls)")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Everything about one video: file, recipe, timings, memory, rating, tags, notes and thumbnails."""
    _, conn = open_home()
    video = require_video(conn, video_id)
    if json_out:
        print_json(video)
    else:
        typer.echo(show_text(video))


@handles_errors
def open_(
    video_id: Annotated[int, typer.Argument(help="video id")],
    print_only: Annotated[
        bool, typer.Option("--print", help="only print the path (inert: videos show --json has its exact bytes)")
    ] = False,
) -> None:
    """Open the video in the local player when there is a display; otherwise print its path."""
    from flf2v_tui.catalogue.player import player_command

    _, conn = open_home()
    path = require_video(conn, video_id)["path"]
    if not Path(path).is_file():
        raise BadInputError(f"{path} is gone (flf2v videos verify lists every such row)")
    command = None if print_only else player_command(path)
    if command is None:
        echo(path)
        return
    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)  # fmt: skip
    echo(f"opened {path} with {Path(command[0]).name}")


@handles_errors
def rate(
    video_id: Annotated[int, typer.Argument(help="video id")],
    stars: Annotated[int, typer.Argument(help="1 to 5; 0 clears the rating")],
) -> None:
    """Rate a video from 1 to 5 stars (0 clears)."""
    if not 0 <= stars <= 5:
        raise BadInputError(f"rating {stars} must be from 1 to 5, or 0 to clear it")
    _, conn = open_home()
    save_user_fields(conn, video_id, rating=stars or None)
    echo(f"video {video_id}: " + (f"rated {stars}" if stars else "rating cleared"))


@handles_errors
def tag(
    video_id: Annotated[int, typer.Argument(help="video id")],
    tags: Annotated[list[str], typer.Argument(help="tags to add (or remove with --remove)")],
    remove: Annotated[bool, typer.Option("--remove", "-d", help="remove these tags instead")] = False,
) -> None:
    """Add tags to a video, or remove them."""
    _, conn = open_home()
    current = list(require_video(conn, video_id)["tags"])
    given = [t.strip() for t in tags if t.strip()]
    if not given:
        raise BadInputError("give at least one tag")
    new = [t for t in current if t not in given] if remove else current + [t for t in given if t not in current]
    save_user_fields(conn, video_id, tags=new)
    echo(f"video {video_id}: tags {', '.join(new) or '(none)'}")


@handles_errors
def fav(
    video_id: Annotated[int, typer.Argument(help="video id")],
    off: Annotated[bool, typer.Option("--off", help="no longer a favourite")] = False,
) -> None:
    """Mark a video as a favourite (or not, with --off)."""
    _, conn = open_home()
    save_user_fields(conn, video_id, favourite=not off)
    echo(f"video {video_id}: " + ("no longer a favourite" if off else "favourite"))


@handles_errors
def note(
    video_id: Annotated[int, typer.Argument(help="video id")],
    text: Annotated[str, typer.Argument(help="the note; an empty string clears it")],
    append: Annotated[bool, typer.Option("--append", "-a", help="add to the existing notes")] = False,
) -> None:
    """Write notes on a video (searchable with flf2v videos ls)."""
    _, conn = open_home()
    notes = text
    if append:
        existing = require_video(conn, video_id)["notes"]
        notes = f"{existing}\n{text}" if existing else text
    save_user_fields(conn, video_id, notes=notes)
    echo(f"video {video_id}: notes saved")


@handles_errors
def rm(
    video_ids: Annotated[list[str], typer.Argument(help="video ids, e.g. 3 or 3,4 or 3..9")],
    keep_file: Annotated[bool, typer.Option("--keep-file", help="keep the mp4, its sidecar and thumbnails")] = False,
) -> None:
    """Remove videos from the catalogue, and their mp4, sidecar and thumbnails unless --keep-file."""
    from flf2v_tui.catalogue.record import files_dir

    _, conn = open_home()
    for video_id in parse_ids(video_ids):
        video = require_video(conn, video_id)
        delete_video(conn, video_id)
        path = Path(video["path"])
        if not keep_file:
            path.unlink(missing_ok=True)
            Path(video["files"].get("sidecar") or path.with_suffix(".json")).unlink(missing_ok=True)
            shutil.rmtree(files_dir(path), ignore_errors=True)
        echo(f"video {video_id} removed" + (f" (kept {path})" if keep_file else f" and {path.name} deleted"))


@handles_errors
def verify(json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Check every row against its file (missing, changed by sha256) and find mp4s no row knows. Exit 1 if any."""
    from flf2v_tui.catalogue.verify import verify as run_verify

    home, conn = open_home()
    findings = run_verify(conn, home.videos)
    if json_out:
        print_json([f.__dict__ for f in findings])
    else:
        for f in findings:
            who = f"video {f.video_id}" if f.video_id is not None else "no row"
            echo(f"{f.kind:<8} {who:<10} {f.path}  ({f.detail})")
        count = len(search(conn, VideoFilter()))
        echo(f"{count} video(s) checked, {len(findings)} problem(s)" if findings else f"all {count} video(s) ok")
    if findings:
        raise typer.Exit(1)


@handles_errors
@with_engine_options
@with_queue_options(None, "ranks (default: as the video was made)")
def rerun(video_id: Annotated[int, typer.Argument(help="video id")], **kwargs: Any) -> None:
    """Queue a new job from a video's stored recipe, with any engine or queue flag changed."""
    from flf2v_tui.catalogue.rerun import recipe_gpus, recipe_values, rerun_labels
    from flf2v_tui.flf_guards import flf_warnings
    from flf2v_tui.submission import build_specs
    from storage.jobs import insert_jobs

    home, conn = open_home()
    video = require_video(conn, video_id)
    changes = {k: v for k, v in engine_values(kwargs).items() if v is not None}
    values = {**recipe_values(video, need_frames=not {"first_frame", "last_frame"} <= set(changes)), **changes}
    queue = queue_values(kwargs, kwargs["gpus"] or recipe_gpus(video))
    queue.labels = rerun_labels(conn, video, queue.labels)
    specs = build_specs(values, queue, queue_seeds(kwargs))
    warnings = flf_warnings(specs[0].engine_values())
    echo_queued(insert_jobs(conn, home, specs), kwargs, f" from video {video_id}", warnings)


def register(app: typer.Typer) -> None:
    examples = {
        "ls": "flf2v videos ls bird --rating 4 --since 3d\n\n  flf2v videos ls --fav --json",
        "show": "flf2v videos show 7",
        "open": "flf2v videos open 7",
        "rate": "flf2v videos rate 7 5",
        "tag": "flf2v videos tag 7 keeper blue\n\n  flf2v videos tag 7 blue --remove",
        "fav": "flf2v videos fav 7",
        "note": 'flf2v videos note 7 "wings look best at step 40"',
        "rm": "flf2v videos rm 7 --keep-file",
        "verify": "flf2v videos verify",
        "rerun": "flf2v videos rerun 7 --base_seed 8\n\n  flf2v videos rerun 7 --prompt 'a red bird' --seeds 1,2,3",
    }
    commands = {"ls": ls, "show": show, "open": open_, "rate": rate, "tag": tag, "fav": fav, "note": note,
                "rm": rm, "verify": verify, "rerun": rerun}  # fmt: skip
    for name, fn in commands.items():
        videos_app.command(name, epilog=f"Example:\n\n  {examples[name]}")(fn)
    app.add_typer(videos_app, name="videos")
