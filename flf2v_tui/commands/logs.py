"""`flf2v logs`: a rank's log, all ranks merged, or torchrun's output, optionally followed live."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from engine.errors import BadInputError
from flf2v_tui.commands.common import handles_errors, open_home
from flf2v_tui.logs import Follower, merged, rank_logs
from flf2v_tui.term import inert
from storage.jobs import get_attempt, require_job

TORCHRUN_LOG = "torchrun.log"


def _write(lines: list[str] | object, raw: bool) -> None:
    out = sys.stdout
    for line in lines:  # type: ignore[attr-defined]
        out.write(line if raw else inert(line.rstrip("\n")) + "\n")
    out.flush()


def _pick_files(log_dir: Path, rank: int | None, all_ranks: bool, torchrun: bool) -> dict[int, Path]:
    ranks = rank_logs(log_dir)
    if torchrun:
        return {-1: log_dir / TORCHRUN_LOG}
    if all_ranks:
        if not ranks:
            raise BadInputError(f"no rank logs in {log_dir} yet; see torchrun's output with --torchrun")
        return ranks
    chosen = 0 if rank is None else rank
    if chosen in ranks or rank is not None:
        return {chosen: log_dir / f"rank{chosen}.log"}
    # Nothing from the ranks yet (still starting, or failed before logging): torchrun's output says why.
    return {-1: log_dir / TORCHRUN_LOG}


@handles_errors
def logs(
    job_id: Annotated[int, typer.Argument(help="job id")],
    rank: Annotated[int | None, typer.Option("--rank", "-r", help="this rank's log (default 0)")] = None,
    all_ranks: Annotated[bool, typer.Option("--all", "-a", help="all ranks merged by time, rank-prefixed")] = False,
    attempt: Annotated[int | None, typer.Option("--attempt", help="attempt number (default: latest)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines until the job ends")] = False,
    torchrun: Annotated[bool, typer.Option("--torchrun", help="torchrun's own stdout/stderr")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="exact bytes, escape sequences included")] = False,
) -> None:
    """Print a job's logs. Escape sequences in rank output are removed unless --raw."""
    _, conn = open_home()
    require_job(conn, job_id)
    row = get_attempt(conn, job_id, attempt)
    if row is None:
        if attempt:
            raise BadInputError(f"job {job_id} has no attempt {attempt} (flf2v show {job_id} lists them)")
        raise BadInputError(f"job {job_id} has not started yet, so it has no logs (flf2v show {job_id})")
    log_dir = Path(row["log_dir"])
    files = _pick_files(log_dir, rank, all_ranks, torchrun)
    if not follow:
        missing = [p for p in files.values() if not p.exists()]
        if missing and len(missing) == len(files):
            raise BadInputError(f"{missing[0]} does not exist (yet); try --torchrun, or --follow to wait for it")
        existing = {r: p for r, p in files.items() if p.exists()}
        if len(existing) > 1:
            _write(merged(existing), raw)
        else:
            with open(next(iter(existing.values())), encoding="utf-8", errors="replace") as fh:
                _write(fh, raw)
        return
    follower = Follower(files, prefix=len(files) > 1)
    try:
        while True:
            _write(follower.poll(), raw)
            state = conn.execute("SELECT state FROM attempts WHERE id = ?", (row["id"],)).fetchone()
            if state is None or state[0] != "running":
                _write(follower.poll() + follower.flush(), raw)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command(
        "logs",
        epilog="Examples:\n\n  flf2v logs 12\n\n  flf2v logs 12 --all --follow\n\n"
        "  flf2v logs 12 --rank 1 --attempt 2\n\n  flf2v logs 12 --torchrun",
    )(logs)
