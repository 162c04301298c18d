"""`flf2v`: the command line of the queue. Every subcommand lives in flf2v_tui/commands/.

Exit codes: 0 ok; 1 a job failed or was cancelled (show, wait), or a check failed (doctor); 2 bad input.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Annotated

import typer

from flf2v_tui.commands import jobs, logs, service, submit, system, tui, videos
from flf2v_tui.commands.common import START_OVER, one_line_error
from flf2v_tui.commands.help_layout import help_wanted, names_one_per_line
from flf2v_tui.term import echo, inert, use_colour

app = typer.Typer(
    name="flf2v",
    help=(
        "Queue, run and watch Wan2.1 first-last-frame-to-video renders.\n\n"
        "Jobs are kept in FLF2V_HOME (default ~/.local/share/flf2v); one `flf2v worker` per machine runs them."
    ),
    epilog="Example: flf2v demo  (a tiny 2-rank CPU render through the queue, under a minute)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for module in (submit, jobs, logs, system, videos, service, tui):
    module.register(app)


@app.callback()
def _global_options(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="start a new, empty queue even though flf2v.db is missing or empty while job folders exist "
            "(the folders are kept); without it flf2v refuses",
        ),
    ] = False,
) -> None:
    START_OVER.allowed, START_OVER.command = force, ctx.invoked_subcommand or "<command>"


def _inert_traceback(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """A bug's traceback quotes whatever its exception holds (a prompt, a path): inert like every message."""
    sys.stderr.write(inert("".join(traceback.format_exception(kind, exc, tb))))


def main(argv: list[str] | None = None) -> None:
    """Usage errors become one line on stderr (exit 2), like every other bad input, not a framed box."""
    sys.excepthook = _inert_traceback
    args = sys.argv[1:] if argv is None else argv
    groups = {group.name for group in app.registered_groups}
    if help_wanted(args) or not args or (len(args) == 1 and args[0] in groups):  # help, or a group's by no_args
        names_one_per_line()
    try:
        # click strips escapes from output that is not a terminal; use_colour decides instead, so that
        # FORCE_COLOR works through a pipe and NO_COLOR strips any colour that reaches typer.echo.
        code = app(argv, standalone_mode=False, color=use_colour())
    except typer.Abort:
        echo("aborted", err=True)
        code = 1
    except Exception as exc:
        # Typer vendors click privately, so its usage errors are recognised by shape, not by class.
        if not (hasattr(exc, "exit_code") and hasattr(exc, "format_message")):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            # The help was made when the error was: rich printed it then (its message is empty), or it is the
            # message; printed once either way.
            if exc.format_message():
                typer.echo(exc.format_message())
            code = 0
        else:
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            # It quotes the argument it could not use: inert, and on one line like every other error.
            echo(one_line_error(f"{exc.format_message()}{hint}"), err=True)
            code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
