"""What happens to a job after a failed attempt: retry with back-off, or fail with a hint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_BACKOFF_S = 3600.0

HINTS: dict[str, str] = {
    "user_input": "fix the input named above and run flf2v retry ID (it is never retried on its own)",
    "oom": "out of memory: give it more GPUs (flf2v retry ID --gpus N), --offload_model True, or --t5_cpu",
    "comm": "the ranks lost each other (NCCL/gloo timeout or rendezvous failure)",
    "killed": "a signal from outside stopped a rank (a person, a time limit, or the kernel's OOM killer)",
    "engine_error": "the engine raised an error; see flf2v logs ID --all",
    "worker_lost": "the worker stopped while the job ran and its processes were gone",
    # Not in the default --retry-on: a retry would fail the same way until someone frees space.
    "disk_full": "free space where it says (or move FLF2V_HOME) and run flf2v retry ID",
}


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay_s: float
    reason: str


def decide(job: dict[str, Any], failure_class: str, message: str = "") -> Decision:
    """Retry when the class is in the job's retry_on and retries remain; user_input never is."""
    retry_on = {c for c in str(job.get("retry_on") or "").split(",") if c}
    used = int(job.get("retries_used") or 0)
    limit = int(job.get("max_retries") or 0)
    detail = f"{failure_class}: {message}" if message else failure_class
    if failure_class != "user_input" and failure_class in retry_on and used < limit:
        delay = min(MAX_BACKOFF_S, float(job.get("retry_backoff") or 0) * (2**used))
        return Decision(True, delay, f"retry {used + 1} of {limit} in {delay:.0f} s after {detail}")
    hint = HINTS.get(failure_class, "")
    if failure_class in retry_on and failure_class != "user_input" and limit:
        hint = f"gave up after {used} retries; {hint}"
    reason = f"{detail}; {hint}" if hint else detail
    return Decision(False, 0.0, reason.replace("ID", str(job.get("id", "ID"))))
