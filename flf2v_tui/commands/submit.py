"""`flf2v submit`, `flf2v retry` and `flf2v edit`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flf2v_tui.commands.common import handles_errors, open_home, parse_ids
from flf2v_tui.commands.options import (
    QUEUE_PANEL,
    echo_queued,
    engine_values,
    in_bounds,
    queue_seeds,
    queue_values,
    with_engine_options,
    with_queue_options,
)
from flf2v_tui.job_edit import edit_job
from flf2v_tui.submission import build_specs, fill_tiny_checkpoint, retry_job
from flf2v_tui.term import echo
from storage.jobs import insert_jobs, require_job

# The queue options of retry and edit, which change a job that exists (None: unchanged).
ChangedGpus = Annotated[
    int | None,
    typer.Option("--gpus", help="change the number of ranks", rich_help_panel=QUEUE_PANEL, callback=in_bounds("gpus")),
]
ChangedPriority = Annotated[
    int | None, typer.Option("--priority", rich_help_panel=QUEUE_PANEL, callback=in_bounds("priority"))
]
OtherWorker = Annotated[
    bool,
    typer.Option(
        "--other-worker", help="do not check a changed --gpus against this machine", rich_help_panel=QUEUE_PANEL
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no FLF warnings (same frames, over 81 frames)")]
# The flags the FLF guards look at: a retry or an edit that changes one of them is warned as a submit is.
GUARDED = ("first_frame", "last_frame", "frame_num")

SUBMIT_EPILOG = """Examples:

  flf2v submit --task flf2v-14B --ckpt_dir ~/Wan2.1-FLF2V-14B-720P --size 1280*720 --first_frame a.png
  --last_frame b.png --prompt "a bird takes off" --gpus 4 --ulysses_size 4 --dit_fsdp --t5_fsdp

  flf2v submit --task flf2v-tiny --first_frame a.png --last_frame b.png --prompt "x" --seeds 1,2,3 --label sweep
"""


@handles_errors
@with_engine_options
@with_queue_options(1, "processes (ranks); one GPU each, or CPU ranks")
def submit(**kwargs: Any) -> None:
    """Validate a render and queue it (one job, or one per seed). Bad input exits 2 and queues nothing."""
    home, conn = open_home()
    given = engine_values(kwargs)
    fill_tiny_checkpoint(home, given)
    specs = build_specs(given, queue_values(kwargs, kwargs["gpus"]), queue_seeds(kwargs), home=home)
    from flf2v_tui.flf_guards import flf_warnings  # PIL: loaded by the commands that look at frames only

    echo_queued(insert_jobs(conn, home, specs), kwargs, warnings=flf_warnings(specs[0].engine_values()))


@handles_errors
@with_engine_options
def retry(
    job_ids: Annotated[list[str], typer.Argument(help="finished job ids")],
    gpus: ChangedGpus = None,
    priority: ChangedPriority = None,
    hold: Annotated[bool, typer.Option("--hold", help="queue it held", rich_help_panel=QUEUE_PANEL)] = False,
    other_worker: OtherWorker = False,
    quiet: Quiet = False,
    **kwargs: Any,
) -> None:
    """Queue a finished job again as a new attempt, optionally with changed flags."""
    home, conn = open_home()
    given = engine_values(kwargs)
    for job_id in parse_ids(job_ids):
        message = retry_job(
            conn, home, job_id, dict(given), gpus=gpus, priority=priority, hold=hold, other_worker=other_worker
        )
        typer.echo(message)
        _warn_flf(conn, job_id, given, quiet)


def _warn_flf(conn: Any, job_id: int, given: dict[str, Any], quiet: bool) -> None:
    """The FLF guards of submit, on stderr, for a job whose frames or frame count were just changed."""
    if quiet or all(given.get(k) is None for k in GUARDED):
        return
    from flf2v_tui.flf_guards import flf_warnings  # PIL: loaded by the commands that look at frames only

    for warning in flf_warnings(require_job(conn, job_id)):
        echo(f"warning: {warning.message}", err=True)


@handles_errors
@with_engine_options
def edit(
    job_id: Annotated[int, typer.Argument(help="a queued job id")],
    gpus: ChangedGpus = None,
    priority: ChangedPriority = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="replace the labels (repeatable)", rich_help_panel=QUEUE_PANEL),
    ] = None,
    other_worker: OtherWorker = False,
    quiet: Quiet = False,
    **kwargs: Any,
) -> None:
    """Change a queued job before it starts (the same checks as submit). A job that has started is refused."""
    home, conn = open_home()
    given = engine_values(kwargs)
    typer.echo(
        edit_job(conn, home, job_id, given, gpus=gpus, priority=priority, labels=label, other_worker=other_worker)
    )
    _warn_flf(conn, job_id, given, quiet)


def register(app: typer.Typer) -> None:
    app.command("submit", epilog=SUBMIT_EPILOG)(submit)
    app.command(
        "retry",
        epilog="Examples:\n\n  flf2v retry 12\n\n  flf2v retry 12 --gpus 4 --offload_model True\n\n"
        "  flf2v retry 12 --base_seed 7 --sample_steps 30",
    )(retry)
    app.command(
        "edit",
        epilog='Examples:\n\n  flf2v edit 12 --prompt "a heron lands on the water" --sample_steps 30\n\n'
        "  flf2v edit 12 --priority 5 --label night",
    )(edit)
