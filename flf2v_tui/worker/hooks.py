"""The finish hook: a user command run when a job ends, for notifications. Never through a shell."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOOK_TIMEOUT_S = 300.0


def hook_env(job: dict[str, Any], attempt: dict[str, Any], home_root: Path) -> dict[str, str]:
    started = job.get("started_at") or attempt.get("started_at")
    finished = job.get("finished_at") or time.time()
    values = {
        "FLF2V_HOME": str(home_root),
        "FLF2V_JOB_ID": str(job["id"]),
        "FLF2V_JOB_STATE": str(job["state"]),
        "FLF2V_ATTEMPT": str(attempt.get("number", "")),
        "FLF2V_OUTPUT": str(job.get("output_path") or ""),
        "FLF2V_FAILURE_CLASS": str(job.get("failure_class") or ""),
        "FLF2V_REASON": str(job.get("state_reason") or ""),
        "FLF2V_PROMPT": str(job.get("prompt") or ""),
        "FLF2V_LOG_DIR": str(attempt.get("log_dir") or ""),
        "FLF2V_CREATED_AT": f"{job.get('created_at') or 0:.3f}",
        "FLF2V_STARTED_AT": f"{started or 0:.3f}",
        "FLF2V_FINISHED_AT": f"{finished:.3f}",
        "FLF2V_SECONDS": f"{(finished - started) if started else 0:.1f}",
    }
    return values


@dataclass
class Hooks:
    argv: list[str]
    running: list[tuple[subprocess.Popen[bytes], float]] = field(default_factory=list)

    def fire(self, env: dict[str, str], log_path: Path) -> str | None:
        """Start the hook; returns an error line when it could not be started (the job is unaffected)."""
        if not self.argv:
            return None
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    self.argv,
                    env={**os.environ, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            return f"finish hook {self.argv[0]!r} could not start: {exc}"
        self.running.append((proc, time.monotonic()))
        return None

    def reap(self) -> None:
        still = []
        for proc, started in self.running:
            if proc.poll() is None:
                if time.monotonic() - started > HOOK_TIMEOUT_S:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, 9)
                    proc.wait()
                    continue
                still.append((proc, started))
        self.running = still

    def wait_all(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
