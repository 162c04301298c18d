"""Building and starting one attempt: torchrun's argument list, its environment, command.txt, the shim."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from flf2v_tui.worker.procs import ATTEMPT_TAG
from storage.claim import Assignment
from storage.spec import engine_argv

ENGINE_MODULE = "engine.generate"


@dataclass
class Launch:
    argv: list[str]
    env_delta: dict[str, str]
    cwd: Path
    save_file: str
    port: int


@dataclass
class Started:
    popen: subprocess.Popen[bytes]
    pgid: int
    pgid_started: float


def free_port(taken: set[int]) -> int:
    """A port nothing listens on now, and not handed to another of this worker's renders."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port
    raise RuntimeError("could not find a free TCP port for torchrun's rendezvous")


def torchrun_prefix() -> list[str]:
    beside = Path(sys.executable).with_name("torchrun")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _slug(text: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", text.lower()).strip("-")
    return words[:40].rstrip("-") or "video"


def output_path(job: dict[str, Any], videos: Path, number: int) -> str:
    """The mp4 for this attempt; an existing file (an earlier render) is never overwritten."""
    if job.get("save_file"):
        target = Path(job["save_file"])
    else:
        target = videos / f"{job['id']:06d}-{_slug(job['prompt'])}-s{job['base_seed']}.mp4"
    if target.exists():
        target = target.with_name(f"{target.stem}-a{number}{target.suffix}")
    return str(target)


def _pythonpath() -> str:
    """Make the engine importable by the ranks even when flf2v runs from a source checkout."""
    spec = importlib.util.find_spec("engine")
    roots = [str(Path(spec.origin).parent.parent)] if spec and spec.origin else []
    existing = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*roots, *existing]))


def build(
    job: dict[str, Any],
    attempt_id: int,
    number: int,
    attempt_dir: Path,
    assignment: Assignment,
    port: int,
    videos: Path,
    tag: str,
    cpu_threads: int,
) -> Launch:
    save_file = output_path(job, videos, number)
    module = os.environ.get("FLF2V_ENGINE_MODULE", ENGINE_MODULE)  # test-only override
    argv = [
        *torchrun_args(int(job["gpus"]), port),
        "-m", module,
        *engine_args(job, attempt_dir, save_file, assignment.device),
    ]  # fmt: skip
    env = environment(assignment, cpu_threads, tag, job_id=job["id"])
    return Launch(argv=argv, env_delta=env, cwd=attempt_dir, save_file=save_file, port=port)


def torchrun_args(nproc: int, port: int) -> list[str]:
    """torchrun and its options, up to the module it runs."""
    return [
        *torchrun_prefix(),
        "--nnodes", "1",
        f"--nproc_per_node={nproc}",
        "--master_addr", "127.0.0.1",
        "--master_port", str(port),
    ]  # fmt: skip


def engine_args(job: dict[str, Any], attempt_dir: Path, save_file: str, device: str) -> list[str]:
    """An attempt's engine.generate argument list: the same for a one-shot render and a job handed to a
    warm group."""
    return [
        *engine_argv({**job, "save_file": save_file}),
        "--events", str(attempt_dir / "events.jsonl"),
        "--log_dir", str(attempt_dir),
        "--device", device,
    ]  # fmt: skip


def environment(assignment: Assignment, cpu_threads: int, tag: str, job_id: int | None = None) -> dict[str, str]:
    """What the ranks' environment adds: their devices, threads, the engine's import path and the tag that
    finds every process of the render (or of the warm group) wherever it was reparented to."""
    env = {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(assignment.slots) if assignment.device == "cuda" else "",
        "OMP_NUM_THREADS": str(cpu_threads),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": _pythonpath(),
    }
    if job_id is not None:
        env["FLF2V_JOB_ID"] = str(job_id)
    env[ATTEMPT_TAG] = tag
    return env


def write_command(launch: Launch, job_id: int, number: int) -> None:
    """command.txt: the exact argv and environment delta, as one line a person can paste into a shell."""
    write_command_as(launch, f"flf2v job {job_id}, attempt {number}")


def write_command_as(launch: Launch, what: str) -> None:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in launch.env_delta.items())
    text = (
        f"# {what}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        f"# cwd: {launch.cwd}\n"
        f"cd {shlex.quote(str(launch.cwd))} && env {env} {shlex.join(launch.argv)}\n"
    )
    (launch.cwd / "command.txt").write_text(text)


def start(launch: Launch) -> Started:
    """Start the shim (which starts torchrun) as the leader of a new session and process group."""
    launch.cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **launch.env_delta}
    with open(launch.cwd / "shim.log", "ab") as shim_log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "flf2v_tui.shim", str(launch.cwd), "--", *launch.argv],
            cwd=launch.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=shim_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Started(popen=popen, pgid=popen.pid, pgid_started=psutil.Process(popen.pid).create_time())
