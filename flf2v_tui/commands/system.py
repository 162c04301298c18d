"""Commands about the machine: worker, gpus, doctor, demo."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer

from engine.diskspace import human_size
from engine.errors import BadInputError
from flf2v_tui.commands.common import die, handles_errors, open_home, print_json
from flf2v_tui.term import echo, inert, paint, table, use_colour
from flf2v_tui.worker import KILL_GRACE_S
from storage.workers import gpu_holders, live_workers


def _overlap(conn: object, slots: list[str]) -> str | None:
    import socket

    for w in live_workers(conn):  # type: ignore[arg-type]
        if w["host"] == socket.gethostname():
            shared = sorted(set(w["pool"].get("slots", [])) & set(slots))
            if shared:
                return f"worker pid {w['pid']} already runs {', '.join(shared)} here"
    return None


@handles_errors
def worker(
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", help="GPU indices to use, e.g. 0,1 (default: FLF2V_GPUS, else all that NVML sees)"),
    ] = None,
    cpu_slots: Annotated[
        int | None, typer.Option("--cpu-slots", help="run on CPU with N slots (the default without GPUs: 1)")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="exit when nothing is left to run")] = False,
    stall_timeout: Annotated[
        float, typer.Option("--stall-timeout", help="minutes without progress before a job is stopped (0: never)")
    ] = 30.0,
    kill_grace: Annotated[
        float, typer.Option("--kill-grace", help="seconds between SIGTERM and SIGKILL")
    ] = KILL_GRACE_S,
    on_finish: Annotated[
        str | None,
        typer.Option(
            "--on-finish",
            help="command run when a job ends, split like a shell would but never run by "
            "one; gets FLF2V_JOB_ID, FLF2V_JOB_STATE, FLF2V_OUTPUT, ... in its environment",
        ),
    ] = None,
    stop_jobs: Annotated[
        bool, typer.Option("--stop-jobs", help="on SIGTERM/Ctrl-C stop the running renders too (they are requeued)")
    ] = False,
    job: Annotated[list[int] | None, typer.Option("--job", help="run only these job ids")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only starts and ends, no progress lines")] = False,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="local (this machine; default) or slurm (sbatch; also FLF2V_BACKEND)"),
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="Slurm partition (sbatch --partition)")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Slurm account (sbatch --account)")] = None,
    time_limit: Annotated[
        str | None, typer.Option("--time", help="Slurm time limit per attempt, e.g. 2:00:00 (sbatch --time)")
    ] = None,
    sbatch_arg: Annotated[
        list[str] | None, typer.Option("--sbatch-arg", help="another sbatch option, e.g. --qos=normal (repeatable)")
    ] = None,
) -> None:
    """Run queued jobs on this machine's GPUs (or CPU slots), one torchrun per job; or, with --backend slurm,
    submit each to Slurm (the worker then runs on a login node, FLF2V_HOME on a shared file system).

    Renders survive the worker: stop it (SIGTERM, Ctrl-C) and start it again, and it re-attaches.
    Slurm settings also come from FLF2V_SLURM_PARTITION, _ACCOUNT, _TIME, _SBATCH_ARGS and FLF2V_HOME/worker.toml.
    """
    from flf2v_tui.gpus import default_source
    from flf2v_tui.worker.launchers.settings import resolve
    from flf2v_tui.worker.loop import Worker, WorkerConfig
    from flf2v_tui.worker.pool import Pool, PoolError

    home, conn = open_home()
    settings = resolve(
        home.root, backend=backend, partition=partition, account=account, time_limit=time_limit,
        sbatch_args=sbatch_arg, cpu_slots=cpu_slots,
    )  # fmt: skip
    launcher = None
    if settings.backend == "slurm":
        import shutil

        from flf2v_tui.worker.launchers.slurm import SlurmLauncher, slurm_pool

        missing = [c for c in ("sbatch", "squeue", "sacct", "scancel") if shutil.which(c) is None]
        if missing:
            raise BadInputError(
                f"--backend slurm: {', '.join(missing)} not found on PATH; run the worker where Slurm's commands "
                "are (a login node); flf2v doctor --backend slurm checks it"
            )
        pool, launcher = slurm_pool(settings.slurm), SlurmLauncher(settings.slurm)
    else:
        try:
            pool = Pool.build(default_source(), gpus=gpus, cpu_slots=cpu_slots)
        except PoolError as exc:
            raise BadInputError(str(exc)) from None
    clash = _overlap(conn, pool.slots)
    if clash:
        fix = "give this worker other --gpus" if pool.device == "cuda" else "give that worker more --cpu-slots"
        raise BadInputError(f"{clash}; {fix}, or stop that worker first")
    try:
        hook = shlex.split(on_finish) if on_finish else []
    except ValueError as exc:
        raise BadInputError(f"--on-finish: {exc}") from None
    config = WorkerConfig(
        gpus=gpus, cpu_slots=cpu_slots, once=once, stall_timeout_s=stall_timeout * 60, kill_grace_s=kill_grace,
        on_finish=hook, stop_jobs=stop_jobs, only_jobs=set(job) if job else None, quiet=quiet,
    )  # fmt: skip
    # Everything the worker says (labels, paths, engine messages) goes through echo, which makes it inert.
    raise typer.Exit(Worker(home, conn, pool, config, echo, launcher).run())


@handles_errors
def gpus(json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Show the GPUs NVML sees, their memory and use, and which job holds each."""
    from flf2v_tui.gpus import GpuUnavailable, default_source

    _, conn = open_home()
    try:
        devices = default_source().devices()
        reason = "" if devices else "NVML works but sees no GPU"
    except GpuUnavailable as exc:
        devices, reason = [], str(exc)
    jobs = {str(slot): job for slot, job in gpu_holders(conn).items()}
    if json_out:
        print_json({"gpus": [{**d.to_json(), "job": jobs.get(str(d.index))} for d in devices], "reason": reason})
        return
    if not devices:
        echo(f"No NVIDIA GPU here: {reason}. The worker runs jobs on CPU slots (flf2v worker --cpu-slots N).")
        return
    rows = []
    for d in devices:
        used = f"{human_size(d.memory_used)} / {human_size(d.memory_total)}"
        util = "-" if d.utilization is None else f"{d.utilization}%"
        owner = f"job {jobs[str(d.index)]}" if str(d.index) in jobs else ""
        foreign = [p.pid for p in d.processes] if not owner else []
        if foreign:
            owner = "other program: pid " + ", ".join(map(str, foreign[:3]))
        rows.append([str(d.index), d.name, used, util, owner or "free"])
    typer.echo(table(rows, ["GPU", "NAME", "MEMORY", "UTIL", "HELD BY"]))


@handles_errors
def doctor(
    backend: Annotated[
        str | None, typer.Option("--backend", help="also check this launcher (default: FLF2V_BACKEND, worker.toml)")
    ] = None,
) -> None:
    """Check python, torch, torchrun, ffmpeg, NVML, the database, disk space and the worker; with the Slurm
    backend configured, also Slurm's commands, its controller and that a compute node sees FLF2V_HOME."""
    from flf2v_tui.doctor import run_checks
    from flf2v_tui.worker.launchers.settings import resolve
    from storage.paths import Home

    home = Home.resolve()
    settings = resolve(home.root, backend=backend)
    checks = run_checks(home)
    if settings.backend == "slurm":
        from flf2v_tui.slurm_doctor import slurm_checks

        checks += slurm_checks(home.root, settings.slurm)
    colour = use_colour()
    marks = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}
    for c in checks:
        word, col = marks[c.status]
        typer.echo(f"{paint(word.ljust(4), col, colour)}  {c.name:<10} {inert(c.detail)}")  # it may name paths
        if c.fix and c.status != "ok":
            echo(f"{'':16}fix: {c.fix}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


@handles_errors
def demo(
    no_worker: Annotated[bool, typer.Option("--no-worker", help="only queue the job (a worker runs it)")] = False,
) -> None:
    """Render a tiny first-last-frame video through the queue: checkpoint, frames, submit, worker, mp4."""
    from flf2v_tui import demo as d
    from flf2v_tui.job_text import show_text
    from flf2v_tui.progress import follow_jobs
    from flf2v_tui.submission import QueueOptions, build_specs
    from flf2v_tui.tiny import ensure_tiny_checkpoint, tiny_ready
    from storage.jobs import attempts_of, insert_jobs, require_job

    home, conn = open_home()
    if not tiny_ready(home.tiny_model):
        echo(f"writing the tiny checkpoint to {home.tiny_model} ...")
    ckpt = ensure_tiny_checkpoint(home)
    first, last = d.draw_frames(home.root / "demo")
    given = {
        "task": "flf2v-tiny", "ckpt_dir": str(ckpt), "first_frame": str(first), "last_frame": str(last),
        "prompt": d.DEMO_PROMPT, "size": d.DEMO_SIZE, "frame_num": d.DEMO_FRAMES, "sample_steps": d.DEMO_STEPS,
    }  # fmt: skip
    # other_worker: its own worker runs it on a CPU slot, even on a box with fewer GPUs than the demo's ranks.
    queue = QueueOptions(gpus=d.DEMO_RANKS, labels=["demo"], max_retries=0, other_worker=True)
    specs = build_specs(given, queue)
    (job_id,) = insert_jobs(conn, home, specs)
    echo(f"queued job {job_id}: {d.DEMO_RANKS} ranks, {d.DEMO_SIZE}, {d.DEMO_FRAMES} frames, {d.DEMO_STEPS} steps")
    proc = None
    if no_worker:
        echo(f"run a worker to render it (flf2v worker), then: flf2v show {job_id}")
        return
    if live_workers(conn):
        echo("a worker is already running; it will render the job")
    else:
        proc, log_path = d.start_worker(home, job_id)
        echo(f"started a worker for it (log: {log_path})")
    finals = follow_jobs(conn, [job_id], timeout=600)
    if proc is not None:
        d.wait_for_worker(proc)
    job = require_job(conn, job_id)
    echo("")
    typer.echo(show_text(job, attempts_of(conn, job_id)))
    if not finals or finals[job_id] != "succeeded":
        die(f"the demo job did not succeed; see flf2v logs {job_id} --all", 1)
    echo("\nThe tiny model has random weights: its video is noise, and shows that the whole pipeline ran.")
    echo(f"frames: {first} -> {last}")
    echo(f"video: {job['output_path']}")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command(
        "worker",
        epilog="Examples:\n\n  flf2v worker\n\n  flf2v worker --gpus 0,1,2,3 --stall-timeout 20 "
        "--on-finish 'notify-send flf2v'\n\n  flf2v worker --cpu-slots 2 --once",
    )(worker)
    app.command("gpus", epilog="Example:\n\n  flf2v gpus --json")(gpus)
    app.command("doctor", epilog="Example:\n\n  flf2v doctor")(doctor)
    app.command("demo", epilog="Example:\n\n  flf2v demo   (or: make demo)")(demo)
