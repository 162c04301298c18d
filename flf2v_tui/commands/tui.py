"""`flf2v tui`: the terminal dashboard. Textual is imported only when the command runs, so other commands
(and `flf2v ls` above all) start without it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from flf2v_tui.commands.common import die, handles_errors, open_home


@handles_errors
def tui(
    job: Annotated[int | None, typer.Option("--job", "-j", help="open this job's view first")] = None,
) -> None:
    """Watch and steer the queue: jobs with live progress, rank logs, GPUs, and a form to submit renders.

    Keys: enter opens a job, c cancels, r retries, h holds/releases, t moves to the top, p pauses/resumes the
    queue, n opens the submit form, / filters, q quits; ctrl+p lists every command.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        die("flf2v tui needs a terminal; in scripts use flf2v ls, flf2v show and flf2v logs --follow")
    home, conn = open_home()  # creates and migrates the database before the app opens it from threads
    conn.close()
    from flf2v_tui.tui.app import Flf2vApp

    Flf2vApp(home, open_job_id=job).run()


def register(app: typer.Typer) -> None:
    app.command("tui", epilog="Examples:\n\n  flf2v tui\n\n  flf2v tui --job 12")(tui)
