"""Text for `flf2v ls` and `flf2v show`: what state a job is in, what it is doing, and why it waits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.diskspace import human_size
from engine.flags import JOB_FLAGS
from engine.telemetry import STAGES
from flf2v_tui.term import age, clock, duration, inert_row, one_line, table
from storage.states import ACTIVE, STARTED, WAITING
from storage.workers import process_alive

PROMPT_WIDTH = 32
STATE_COLOURS = {
    "queued": None,
    "held": "dim",
    "running": "cyan",
    "cancelling": "yellow",
    "interrupted": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def display_state(job: dict[str, Any]) -> str:
    """The state a person should see: held and cancelling are flags on queued/running jobs, and a running
    job whose worker process is gone is interrupted until a worker re-attaches or requeues it."""
    state = job["state"]
    if state == "queued" and (job.get("held") or job.get("waiting_on")):
        return "held"  # as the design card has it: a user hold, or an unmet dependency
    if state in STARTED and job.get("cancel_requested"):
        return "cancelling"
    if (
        state == "running"
        and process_alive(job.get("worker_host"), job.get("worker_pid"), job.get("worker_started")) is False
    ):
        return "interrupted"
    return state


def with_worker(job: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """A job row (from get_job) with its latest attempt's worker, which display_state needs."""
    latest = attempts[-1] if attempts else {}
    return {**job, **{k: latest.get(k) for k in ("worker_host", "worker_pid", "worker_started")}}


def slurm_text(row: dict[str, Any]) -> str:
    """A Slurm attempt in a few words: its job id, and why it is pending or the nodes it runs on ("" for a
    local attempt). `row`: a job row of the list (its current attempt's columns) or an attempt row."""
    if not row.get("slurm_job"):
        return ""
    state = row.get("slurm_state") or "submitted"
    if state == "PENDING":
        return f"slurm {row['slurm_job']} pending, why pending: {row.get('slurm_reason') or 'not said yet'}"
    nodes = f" on {row['node_list']}" if row.get("node_list") else ""
    return f"slurm {row['slurm_job']} {state}{nodes}"


def note(job: dict[str, Any], now: float, waiting: str = "waiting for a worker") -> str:
    """What the job is doing, or why it is not; `waiting` for a queued job nothing more is known about
    (flf2v_tui.ls_table.waiting_text says why, from the workers)."""
    state = display_state(job)
    if state in ACTIVE and job.get("slurm_state") == "PENDING":
        return one_line(slurm_text(job))
    if state in ACTIVE and job.get("stage"):
        text = job["stage"]
        if job.get("step") and job.get("steps_total"):
            text += f" {job['step']}/{job['steps_total']}"
            if job.get("sec_per_it"):
                text += f" {job['sec_per_it']:.2f}s/it"
        return " · ".join(x for x in (text, warm_mark(job)) if x)
    if state == "held" and job.get("never_on"):
        ended = ", ".join(f"job {part}" for part in job["never_on"].split(","))  # "5 failed"
        return f"never starts: {ended} (retry it, or cancel this job)"
    if state == "held" and job.get("waiting_on"):
        return job["waiting_on"] + (" (and held)" if job.get("held") else "")  # "after-fail 5"
    if state == "queued":
        if job.get("not_before") and job["not_before"] > now:
            return f"retry in {duration(job['not_before'] - now)}"
        return one_line(job.get("state_reason")) or waiting
    if state == "held":
        return "held"
    if state == "succeeded":
        done = Path(job["output_path"]).name if job.get("output_path") else "done"
        return " · ".join(x for x in (done, warm_mark(job)) if x)
    if state == "failed":
        rank = f" rank {job['failing_rank']}" if job.get("failing_rank") is not None else ""
        return one_line(f"{job.get('failure_class') or 'failed'}{rank}")
    return one_line(job.get("state_reason"))


def gpus_text(job: dict[str, Any], state: str) -> str:
    """The GPUs a running job holds (or its CPU ranks); the number it asks for otherwise."""
    if state in ACTIVE and job.get("slurm_job"):
        nodes = job.get("nodes") or 1
        return f"slurm {job['slurm_job']}" + (f" {nodes}×{job['gpus']}" if nodes > 1 else f" ×{job['gpus']}")
    if state in ACTIVE and job.get("assigned"):
        if job.get("device") == "cpu":
            return f"cpu×{job['gpus']}"
        return job["assigned"]
    nodes = job.get("nodes") or 1
    return f"{nodes}×{job['gpus']}" if nodes > 1 else str(job["gpus"])


def warm_mark(job: dict[str, Any]) -> str:
    """`warm` for a job whose current attempt found the engine loaded in a warm group, else ""."""
    return "warm" if job.get("warm") else ""


def held_by(holder: int | str) -> str:
    """Who holds a GPU (storage.workers.gpu_holders): a job by its id, or an idle warm group."""
    return f"job {holder}" if isinstance(holder, int) else one_line(holder)


def load_text(attempt: dict[str, Any]) -> str:
    """Whether the attempt found the engine loaded (warm, and the load seconds that saved) or loaded it."""
    if attempt.get("warm") is None:
        return "-"
    if attempt["warm"]:
        return f"warm, saved {duration(attempt.get('load_saved_s') or 0)}"
    return "cold"


def job_time(job: dict[str, Any], state: str, now: float) -> str:
    if state in ACTIVE:
        return age(job.get("attempt_started") or job.get("started_at"), now)
    if state in WAITING:
        return age(job.get("queued_at"), now)
    if job.get("finished_at") and job.get("started_at"):
        return duration(job["finished_at"] - job["started_at"])
    return "-"


def ls_json(jobs: list[dict[str, Any]], waiting: str = "waiting for a worker") -> list[dict[str, Any]]:
    out = []
    now = time.time()
    for job in jobs:
        item = {k: v for k, v in job.items() if k not in ("worker_started",)}
        item["display_state"] = display_state(job)
        item["note"] = note(job, now, waiting)
        out.append(item)
    return out


# The job's engine parameters in the order `show` and the job view list them. Every job flag of engine.flags
# is here or in SHOWN_ELSEWHERE (tests/unit/test_flags.py checks it), so a new flag is not left out.
SHOWN_PARAMS = (
    "task", "size", "frame_num", "sample_steps", "sample_shift", "sample_guide_scale", "sample_solver",
    "base_seed", "offload_model", "t5_fsdp", "dit_fsdp", "t5_cpu", "ulysses_size", "ring_size", "cfg_size", "attn",
    "compile", "dtype", "ckpt_dir",
    "first_frame", "first_frame_src", "last_frame", "last_frame_src", "save_file", "preview_every",
    "collective_timeout",
)  # fmt: skip
SHOWN_ELSEWHERE = ("prompt", "neg_prompt")  # a heading of their own
_BOOLS = frozenset(flag.name for flag in JOB_FLAGS if flag.type is bool)


# Below this a generated end frame visibly differs from its input (a shift of colour or composition).
LOW_PSNR_DB = 20.0


def psnr_text(first: float | None, last: float | None) -> str:
    """`first 31.5 dB, last 18.2 dB (low)`: how close a render's end frames came to its inputs; "" if unknown."""
    if first is None or last is None:
        return ""
    parts = [f"{name} {value:.1f} dB" + (" (low)" if value < LOW_PSNR_DB else "") for name, value in
             (("first", first), ("last", last))]  # fmt: skip
    return ", ".join(parts)


def psnr_cell(first: float | None, last: float | None) -> str:
    """`31.5/28.3` for a table: the first and last frames' PSNR against the inputs in dB; `-` when unknown."""
    return "-" if first is None or last is None else f"{first:.1f}/{last:.1f}"


def job_params(job: dict[str, Any]) -> list[tuple[str, str]]:
    """The recipe's engine parameters worth showing, as (name, text)."""
    return [
        (k, str(bool(job[k])) if k in _BOOLS else one_line(job[k]))
        for k in SHOWN_PARAMS
        if job.get(k) not in (None, "")
    ]


ATTEMPT_HEADER = ["#", "STATE", "STARTED", "TOOK", "LOAD", "SLOTS", "PORT", "EXIT", "RANK", "CLASS", "PEAK", "LOGS"]


def attempt_rows(attempts: list[dict[str, Any]], now: float) -> list[list[str]]:
    """One row of text per attempt, in the columns of ATTEMPT_HEADER (shared by `show` and the TUI)."""
    rows = []
    for a in inert_row(attempts):
        ended = a.get("ended_at") or now
        peak = max((int(v) for v in a["peak_memory"].values()), default=None)
        rows.append(
            [
                f"#{a['number']}",
                a["state"],
                clock(a["started_at"]),
                duration(ended - a["started_at"]),
                load_text(a),
                f"slurm {a['slurm_job']}" if a.get("slurm_job") else f"{a['device']}:{a['gpus']}",
                str(a.get("master_port") or "-"),
                "-" if a.get("exit_code") is None else str(a["exit_code"]),
                "-" if a.get("failing_rank") is None else str(a["failing_rank"]),
                a.get("failure_class") or "-",
                human_size(peak) if peak else "-",
                a["log_dir"],
            ]
        )
    return rows


def _ranks(job: dict[str, Any]) -> str:
    nodes = int(job.get("nodes") or 1)
    if nodes == 1:
        return f"{job['gpus']} rank(s)"
    return f"{nodes} nodes × {job['gpus']} rank(s) = {nodes * int(job['gpus'])} rank(s)"


def _show_reason(job: dict[str, Any], state: str, now: float) -> str:
    """Why the job is in its state: a dependency that holds it (or never will let it start), else the
    stored reason."""
    if state == "held" and (job.get("never_on") or job.get("waiting_on")):
        return note(job, now)
    return job.get("state_reason") or ""


def show_text(job: dict[str, Any], attempts: list[dict[str, Any]]) -> str:
    now = time.time()
    state = display_state(with_worker(job, attempts))
    job, attempts = inert_row(job), inert_row(attempts)
    latest = attempts[-1] if attempts else {}
    lines = [
        f"job {job['id']}: {state}" + (f" — {reason}" if (reason := _show_reason(job, state, now)) else ""),
        f"  prompt     {job['prompt']}",
    ]
    if job.get("neg_prompt"):
        lines.append(f"  neg_prompt {job['neg_prompt']}")
    lines += [
        f"  gpus       {_ranks(job)}, priority {job['priority']}, labels {','.join(job['labels']) or '-'}",
        f"  retries    {job['retries_used']} of {job['max_retries']} used, on {job['retry_on'] or 'nothing'}",
        f"  created    {clock(job['created_at'])}   started {clock(job['started_at'])}   "
        f"finished {clock(job['finished_at'])}",
    ]
    if latest.get("slurm_job"):
        lines.append(f"  slurm      {slurm_text(latest).removeprefix('slurm ')}")
        used = [f"{name} {latest[key]}" for name, key in (("elapsed", "slurm_elapsed"), ("MaxRSS", "slurm_max_rss"))
                if latest.get(key)]  # fmt: skip
        if used:
            lines.append(f"  slurm use  {', '.join(used)} (sacct)")
    for name, what in (("after", "succeeded"), ("after_any", "ended"), ("after_fail", "failed")):
        if job.get(name):
            lines.append(f"  after      {', '.join(map(str, job[name]))} {what}")
    if job.get("output_path"):
        lines.append(f"  output     {job['output_path']}")
    if latest.get("attention"):  # what --attn auto picked on the card that ran the latest attempt
        lines.append(f"  attention  {latest['attention']}")
    lines.append("  parameters")
    lines += [f"    {k:<19}{v}" for k, v in job_params(job)]
    if latest and latest.get("state") == "running":
        lines.append("  progress")
        step = f"{latest.get('step') or 0}/{latest.get('steps_total') or '?'}"
        spi = f"{latest['sec_per_it']:.2f} s/it" if latest.get("sec_per_it") else "- s/it"
        eta = duration(latest.get("eta_seconds"))
        lines.append(f"    stage {latest.get('stage') or 'starting'}, step {step}, {spi}, ETA {eta}")
    if attempts:
        lines.append("  attempts")
        lines += ["    " + line for line in table(attempt_rows(attempts, now), ATTEMPT_HEADER).splitlines()]
        fidelity = psnr_text(latest.get("psnr_first"), latest.get("psnr_last"))
        if fidelity:
            lines.append(f"  psnr       {fidelity} (the render's end frames against the inputs)")
        if latest.get("failure_message"):
            lines.append(f"  last error {latest['failure_message'].splitlines()[0][:300]}")
        if latest.get("stage_seconds"):
            took = latest["stage_seconds"]
            order = [s for s in STAGES if s in took] + sorted(s for s in took if s not in STAGES)
            stages = ", ".join(f"{k} {took[k]:.1f}s" for k in order)
            lines.append(f"  stages     {stages}")
    return "\n".join(lines)


def show_json(job: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {**job, "display_state": display_state(with_worker(job, attempts)), "attempts": attempts}
