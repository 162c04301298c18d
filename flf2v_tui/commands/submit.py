"""`flf2v submit` and `flf2v retry`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flf2v_tui.commands.common import handles_errors, open_home, parse_ids, print_json
from flf2v_tui.commands.options import engine_values, with_engine_options
from flf2v_tui.submission import (
    QueueOptions,
    build_specs,
    fill_tiny_checkpoint,
    parse_retry_on,
    parse_seeds,
    retry_job,
)
from storage.jobs import insert_jobs

_Q = "Queue options"

SUBMIT_EPILOG = """Examples:

  flf2v submit --task flf2v-14B --ckpt_dir ~/Wan2.1-FLF2V-14B-720P --size 1280*720 --first_frame a.png
  --last_frame b.png --prompt "a bird takes off" --gpus 4 --ulysses_size 4 --dit_fsdp --t5_fsdp

  flf2v submit --task flf2v-tiny --first_frame a.png --last_frame b.png --prompt "x" --seeds 1,2,3 --label sweep
"""


def _after(values: list[str] | None) -> list[int]:
    return parse_ids(values) if values else []


@handles_errors
@with_engine_options
def submit(
    gpus: Annotated[
        int, typer.Option("--gpus", help="processes (ranks); one GPU each, or CPU ranks", rich_help_panel=_Q)
    ] = 1,
    nodes: Annotated[int, typer.Option("--nodes", help="machines (only 1 is supported)", rich_help_panel=_Q)] = 1,
    priority: Annotated[int, typer.Option("--priority", help="higher runs first", rich_help_panel=_Q)] = 0,
    after: Annotated[
        list[str] | None, typer.Option("--after", help="start only after these jobs succeeded", rich_help_panel=_Q)
    ] = None,
    hold: Annotated[bool, typer.Option("--hold", help="queue it held (flf2v release ID)", rich_help_panel=_Q)] = False,
    label: Annotated[list[str] | None, typer.Option("--label", help="a label (repeatable)", rich_help_panel=_Q)] = None,
    retries: Annotated[int, typer.Option("--retries", help="automatic retries", rich_help_panel=_Q)] = 2,
    retry_on: Annotated[
        str | None,
        typer.Option("--retry-on", "--retry_on", help="classes retried (default comm,worker_lost)", rich_help_panel=_Q),
    ] = None,
    retry_backoff: Annotated[
        float,
        typer.Option("--retry-backoff", help="seconds before the first retry; doubles each time", rich_help_panel=_Q),
    ] = 30.0,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="a sweep: one job per seed, e.g. 1,2,3", rich_help_panel=_Q)
    ] = None,
    seed_range: Annotated[
        str | None,
        typer.Option("--seed-range", "--seed_range", help="a sweep over A..B inclusive", rich_help_panel=_Q),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the new job ids as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the job ids")] = False,
    **kwargs: Any,
) -> None:
    """Validate a render and queue it (one job, or one per seed). Bad input exits 2 and queues nothing."""
    home, conn = open_home()
    given = engine_values(kwargs)
    fill_tiny_checkpoint(home, given)
    queue = QueueOptions(
        gpus=gpus,
        nodes=nodes,
        priority=priority,
        after=_after(after),
        held=hold,
        labels=[x for x in (label or []) if x.strip()],
        max_retries=retries,
        retry_on=parse_retry_on(retry_on) or QueueOptions().retry_on,
        retry_backoff=retry_backoff,
    )
    specs = build_specs(given, queue, parse_seeds(seeds, seed_range))
    ids = insert_jobs(conn, home, specs)
    if json_out:
        print_json({"ids": ids})
    elif quiet:
        typer.echo("\n".join(map(str, ids)))
    elif len(ids) == 1:
        typer.echo(f"queued job {ids[0]}" + (" (held)" if hold else ""))
    else:
        typer.echo(f"queued {len(ids)} jobs: {ids[0]}..{ids[-1]}" + (" (held)" if hold else ""))


@handles_errors
@with_engine_options
def retry(
    job_ids: Annotated[list[str], typer.Argument(help="finished job ids")],
    gpus: Annotated[int | None, typer.Option("--gpus", help="change the number of ranks", rich_help_panel=_Q)] = None,
    priority: Annotated[int | None, typer.Option("--priority", rich_help_panel=_Q)] = None,
    hold: Annotated[bool, typer.Option("--hold", help="queue it held", rich_help_panel=_Q)] = False,
    **kwargs: Any,
) -> None:
    """Queue a finished job again as a new attempt, optionally with changed flags."""
    home, conn = open_home()
    given = engine_values(kwargs)
    for job_id in parse_ids(job_ids):
        typer.echo(retry_job(conn, home, job_id, dict(given), gpus=gpus, priority=priority, hold=hold))


def register(app: typer.Typer) -> None:
    app.command("submit", epilog=SUBMIT_EPILOG)(submit)
    app.command(
        "retry",
        epilog="Examples:\n\n  flf2v retry 12\n\n  flf2v retry 12 --gpus 4 --offload_model True\n\n"
        "  flf2v retry 12 --base_seed 7 --sample_steps 30",
    )(retry)
