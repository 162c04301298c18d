"""What happens to a job after a failed attempt: retry with back-off, or fail with a hint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.space import WAITS_FOR_SPACE

MAX_BACKOFF_S = 3600.0

HINTS: dict[str, str] = {
    "user_input": "fix the input named above and run flf2v retry ID (it is never retried on its own)",
    "oom": "out of memory: give it more GPUs (flf2v retry ID --gpus N), --offload_model True, or --t5_cpu",
    "comm": "the ranks lost each other (NCCL/gloo timeout or rendezvous failure)",
    "killed": "a signal from outside stopped a rank (a person, a time limit, or the kernel's OOM killer)",
    "engine_error": "the engine raised an error; see flf2v logs ID --all",
    "worker_lost": "the worker stopped while the job ran and its processes were gone",
    "timeout": "it reached its Slurm time limit: start the worker with a longer --time (or FLF2V_SLURM_TIME) and run "
    "flf2v retry ID",
    # Said once its retries are spent; until then it waits, queued, for room (storage/space.py).
    "disk_full": "free space where it says (or move FLF2V_HOME) and run flf2v retry ID",
}


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay_s: float
    reason: str


def decide(job: dict[str, Any], failure_class: str, message: str = "") -> Decision:
    """Retry when the class is in the job's retry_on and retries remain; user_input never is. disk_full is
    retried whatever retry_on says while retries remain, with no back-off: it waits for room instead (the
    claim does not take it until the disk that was full has room again), so a retry is not spent on a disk
    that is still full."""
    retry_on = {c for c in str(job.get("retry_on") or "").split(",") if c}
    if failure_class == WAITS_FOR_SPACE:
        retry_on.add(failure_class)
    used = int(job.get("retries_used") or 0)
    limit = int(job.get("max_retries") or 0)
    detail = f"{failure_class}: {message}" if message else failure_class
    if failure_class == WAITS_FOR_SPACE and used < limit:
        return Decision(True, 0.0, f"retry {used + 1} of {limit} once there is room, after {detail}")
    if failure_class != "user_input" and failure_class in retry_on and used < limit:
        delay = min(MAX_BACKOFF_S, float(job.get("retry_backoff") or 0) * (2**used))
        return Decision(True, delay, f"retry {used + 1} of {limit} in {delay:.0f} s after {detail}")
    hint = HINTS.get(failure_class, "")
    if failure_class in retry_on and failure_class != "user_input" and limit:
        hint = f"gave up after {used} retries; {hint}"
    reason = f"{detail}; {hint}" if hint else detail
    return Decision(False, 0.0, reason.replace("ID", str(job.get("id", "ID"))))
