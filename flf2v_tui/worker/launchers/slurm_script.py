"""The batch script of one Slurm attempt: written into the attempt folder, readable and rerunnable by hand.

It asks for the job's nodes, one task per node and the job's GPUs per node, checks that every node sees the
attempt folder, then runs `srun torchrun` with a c10d rendezvous on the first node, and the same engine
arguments a local attempt runs. torchrun's output (every node's) goes to torchrun.log, as locally, and the
script records srun's exit status in exit.json, which the worker reads the same way as the local shim's.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from flf2v_tui.shim import EXIT_FILE, LOG_FILE
from flf2v_tui.worker.launchers.slurm_status import NOT_SHARED_EXIT, NOT_SHARED_FIX

SCRIPT_FILE = "job.sbatch"
SHARED_TOKEN = "shared.token"  # written by the worker; every node must see it before the render starts
RDZV_PORT_BASE = 20000
RDZV_PORTS = 10000  # 20000-29999
# Variables the worker sets for a local render that Slurm sets itself on a cluster (its GPUs per node).
_SLURM_OWNS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


@dataclass
class SlurmOptions:
    """`flf2v worker --backend slurm`'s sbatch settings (also FLF2V_SLURM_* and the config file)."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None  # Slurm's --time, e.g. 2:00:00
    sbatch_args: list[str] = field(default_factory=list)  # passed to sbatch as they are, one option each
    device: str = "cuda"  # what the nodes render on; "cpu" asks for CPUs instead of GPUs (tests, demos)
    max_jobs: int = 16  # Slurm jobs this worker keeps submitted at once
    cpus_per_gpu: int = 4  # CPUs asked per GPU rank on cuda nodes (data loading, the VAE's host side)
    poll_s: float = 2.0  # the least time between two squeue calls about one job (the controller serves everyone)


def where_to_run(options: SlurmOptions) -> list[str]:
    """The partition and account options, the same for the batch script and `flf2v doctor`'s srun."""
    return [
        *([f"--partition={options.partition}"] if options.partition else []),
        *([f"--account={options.account}"] if options.account else []),
    ]


def job_name(home_root: str, attempt_id: int) -> str:
    """Unique per FLF2V_HOME and attempt: a restarted worker finds a job it never recorded by this name."""
    import hashlib

    digest = hashlib.sha256(home_root.encode()).hexdigest()[:8]
    return f"flf2v-{digest}-a{attempt_id}"


def rdzv_port(slurm_job_id: str) -> int:
    """The c10d rendezvous port on the first node, from the Slurm job id (the script computes the same in bash):
    a cluster's job ids are unique, so two renders sharing a head node, whichever FLF2V_HOME they come from,
    meet on different ports; below Linux's ephemeral range (32768 and up), so no outgoing connection holds it."""
    return RDZV_PORT_BASE + int(slurm_job_id.split("_")[0]) % RDZV_PORTS if slurm_job_id.split("_")[0].isdigit() else 0


def engine_command(argv: list[str]) -> list[str]:
    """The `-m MODULE ARGS...` part of a local torchrun command line: what every launcher runs."""
    at = argv.index("-m")
    return argv[at:]


def batch_script(
    *,
    job_id: int,
    number: int,
    attempt_id: int,
    name: str,
    folder: Path,
    nodes: int,
    ranks_per_node: int,
    torchrun: list[str],
    engine: list[str],
    env: dict[str, str],
    options: SlurmOptions,
) -> str:
    q = shlex.quote
    # One task per node runs torchrun, whose ranks share the task's CPUs; srun 22.05 and later no longer read
    # SLURM_CPUS_PER_TASK, so the step asks for them again.
    cpus = ranks_per_node * (options.cpus_per_gpu if options.device == "cuda" else 1)
    asks = [
        f"--job-name={name}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        # Our retry policy decides about another attempt (in a folder of its own); Slurm's requeue would rerun
        # this one into the same folder after a node failure.
        "--no-requeue",
        *([f"--gpus-per-node={ranks_per_node}"] if options.device == "cuda" else []),
        f"--cpus-per-task={cpus}",
        f"--output={folder / LOG_FILE}",
        f"--chdir={folder}",
        *where_to_run(options),
        *([f"--time={options.time}"] if options.time else []),
        *options.sbatch_args,
    ]
    exports = "\n".join(f"export {k}={q(v)}" for k, v in env.items() if k not in _SLURM_OWNS)
    token = folder / SHARED_TOKEN
    rdzv = [
        *torchrun,
        "--nnodes", "$SLURM_NNODES",
        f"--nproc-per-node={ranks_per_node}",
        "--rdzv-backend=c10d",
        '--rdzv-endpoint="$head:$port"',
        f'--rdzv-id="flf2v-{job_id}-{number}-$SLURM_JOB_ID"',
    ]  # fmt: skip
    launch = " ".join(a if a.startswith(("$", "--rdzv-endpoint=", "--rdzv-id=")) else q(a) for a in rdzv)
    lines = [
        "#!/bin/bash",
        f"# flf2v job {job_id}, attempt {number}: written by the flf2v worker on {time.strftime('%Y-%m-%d %H:%M:%S')}.",
        f"# Rerun it by hand with: sbatch {q(str(folder / SCRIPT_FILE))}",
        *(f"#SBATCH {a}" for a in asks),
        "",
        exports,
        f"cd {q(str(folder))} || exit {NOT_SHARED_EXIT}",
        "",
        "# Every node writes its ranks' logs, the events and the video into this folder: it must see it.",
        f'srun --ntasks-per-node=1 sh -c \'test -f "$1" || {{ echo "flf2v: node $(hostname) cannot see $1: '
        f"{NOT_SHARED_FIX}\" >&2; exit {NOT_SHARED_EXIT}; }}' sh {q(str(token))}"
        f" || exit {NOT_SHARED_EXIT}",
        "",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"port=$(({RDZV_PORT_BASE} + SLURM_JOB_ID % {RDZV_PORTS}))  # as rdzv_port() computes it",
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task={cpus} {launch} "
        + " ".join(q(a) for a in engine),
        "rc=$?",
        f'echo "{{\\"returncode\\": $rc, \\"ended\\": $(date +%s)}}" > {q(str(folder / EXIT_FILE))}',
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)
