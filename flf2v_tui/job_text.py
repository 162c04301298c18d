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


def note(job: dict[str, Any], now: float) -> str:
    """What the job is doing, or why it is not."""
    state = display_state(job)
    if state in ACTIVE and job.get("stage"):
        text = job["stage"]
        if job.get("step") and job.get("steps_total"):
            text += f" {job['step']}/{job['steps_total']}"
            if job.get("sec_per_it"):
                text += f" {job['sec_per_it']:.2f}s/it"
        return text
    if state == "held" and job.get("waiting_on"):
        return f"after {job['waiting_on']}" + (" (and held)" if job.get("held") else "")
    if state == "queued":
        if job.get("not_before") and job["not_before"] > now:
            return f"retry in {duration(job['not_before'] - now)}"
        return one_line(job.get("state_reason")) or "waiting for a worker"
    if state == "held":
        return "held"
    if state == "succeeded":
        return Path(job["output_path"]).name if job.get("output_path") else "done"
    if state == "failed":
        rank = f" rank {job['failing_rank']}" if job.get("failing_rank") is not None else ""
        return one_line(f"{job.get('failure_class') or 'failed'}{rank}")
    return one_line(job.get("state_reason"))


def short_prompt(text: str | None, width: int = PROMPT_WIDTH) -> str:
    """The prompt on one line, inert, cut to `width` characters."""
    return one_line(text, width)


def gpus_text(job: dict[str, Any], state: str) -> str:
    """The GPUs a running job holds (or its CPU ranks); the number it asks for otherwise."""
    if state in ACTIVE and job.get("assigned"):
        if job.get("device") == "cpu":
            return f"cpu×{job['gpus']}"
        return job["assigned"]
    return str(job["gpus"])


def _time(job: dict[str, Any], state: str, now: float) -> str:
    if state in ACTIVE:
        return age(job.get("attempt_started") or job.get("started_at"), now)
    if state in WAITING:
        return age(job.get("queued_at"), now)
    if job.get("finished_at") and job.get("started_at"):
        return duration(job["finished_at"] - job["started_at"])
    return "-"


def ls_text(jobs: list[dict[str, Any]], width: int = 0, now: float | None = None) -> str:
    now = now or time.time()
    rows, colours = [], []
    for job in jobs:
        state = display_state(job)
        eta = duration(job["eta_seconds"]) if state == "running" and job.get("eta_seconds") is not None else "-"
        prompt = short_prompt(job.get("prompt"))
        labels = ",".join(job.get("labels") or []) or "-"
        rows.append([str(job["id"]), state, gpus_text(job, state), eta, _time(job, state, now), labels, prompt,
                     note(job, now)])  # fmt: skip
        colours.append(STATE_COLOURS.get(state))
    # The note (what it does, or why it waits) comes last so that it is never cut short when piped.
    return table(rows, ["ID", "STATE", "GPUS", "ETA", "TIME", "LABELS", "PROMPT", "NOTE"], colours, width)


def ls_json(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    now = time.time()
    for job in jobs:
        item = {k: v for k, v in job.items() if k not in ("worker_started",)}
        item["display_state"] = display_state(job)
        item["note"] = note(job, now)
        out.append(item)
    return out


# The job's engine parameters in the order `show` and the job view list them. Every job flag of engine.flags
# is here or in SHOWN_ELSEWHERE (tests/unit/test_flags.py checks it), so a new flag is not left out.
SHOWN_PARAMS = (
    "task", "size", "frame_num", "sample_steps", "sample_shift", "sample_guide_scale", "sample_solver",
    "base_seed", "offload_model", "t5_fsdp", "dit_fsdp", "t5_cpu", "ulysses_size", "ring_size", "cfg_size", "attn",
    "compile", "ckpt_dir",
    "first_frame", "first_frame_src", "last_frame", "last_frame_src", "save_file", "preview_every",
)  # fmt: skip
SHOWN_ELSEWHERE = ("prompt", "neg_prompt")  # a heading of their own
_BOOLS = frozenset(flag.name for flag in JOB_FLAGS if flag.type is bool)


def job_params(job: dict[str, Any]) -> list[tuple[str, str]]:
    """The recipe's engine parameters worth showing, as (name, text)."""
    return [
        (k, str(bool(job[k])) if k in _BOOLS else one_line(job[k]))
        for k in SHOWN_PARAMS
        if job.get(k) not in (None, "")
    ]


ATTEMPT_HEADER = ["#", "STATE", "STARTED", "TOOK", "SLOTS", "PORT", "EXIT", "RANK", "CLASS", "PEAK", "LOGS"]


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
                f"{a['device']}:{a['gpus']}",
                str(a.get("master_port") or "-"),
                "-" if a.get("exit_code") is None else str(a["exit_code"]),
                "-" if a.get("failing_rank") is None else str(a["failing_rank"]),
                a.get("failure_class") or "-",
                human_size(peak) if peak else "-",
                a["log_dir"],
            ]
        )
    return rows


def show_text(job: dict[str, Any], attempts: list[dict[str, Any]]) -> str:
    now = time.time()
    state = display_state(with_worker(job, attempts))
    job, attempts = inert_row(job), inert_row(attempts)
    latest = attempts[-1] if attempts else {}
    lines = [
        f"job {job['id']}: {state}" + (f" — {job['state_reason']}" if job.get("state_reason") else ""),
        f"  prompt     {job['prompt']}",
    ]
    if job.get("neg_prompt"):
        lines.append(f"  neg_prompt {job['neg_prompt']}")
    lines += [
        f"  gpus       {job['gpus']} rank(s), priority {job['priority']}, labels {','.join(job['labels']) or '-'}",
        f"  retries    {job['retries_used']} of {job['max_retries']} used, on {job['retry_on'] or 'nothing'}",
        f"  created    {clock(job['created_at'])}   started {clock(job['started_at'])}   "
        f"finished {clock(job['finished_at'])}",
    ]
    if job.get("after"):
        lines.append(f"  after      {', '.join(map(str, job['after']))}")
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
