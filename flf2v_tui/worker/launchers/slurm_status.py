"""What Slurm says of a job: squeue while it is known there, sacct after; and what a Slurm end means for us.

Only the Slurm client commands are run (squeue, sacct, scancel, sbatch), never the daemons' files, so this
works from a login node of any cluster. sacct is tried against the accounting database first and, where a
cluster has none, against the job completion log (`sacct -c`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

# States after which nothing of the job runs any more.
TERMINAL = frozenset(
    {
        "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "OUT_OF_MEMORY",
        "DEADLINE", "REVOKED", "SPECIAL_EXIT",
    }
)  # fmt: skip
# The cluster's fault, not the job's: retried like a lost worker.
INFRASTRUCTURE = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REVOKED"})
COMMAND_TIMEOUT_S = 20.0
# The exit status the batch script gives when a node cannot see the attempt folder (see slurm_script).
NOT_SHARED_EXIT = 97
# Said wherever a node cannot see the attempt folder: the batch script, the attempt's end, `flf2v doctor`.
NOT_SHARED_FIX = "FLF2V_HOME must be on a file system every node mounts (NFS, Lustre, ...)"


class SlurmCommandError(RuntimeError):
    """A Slurm client command failed or is missing; its message names the command and what it said."""


@dataclass
class SlurmStatus:
    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, ... (the first word: "CANCELLED by 0" is CANCELLED)
    reason: str = ""  # why it waits (Priority, Resources, ...); "" when it runs or has none
    nodes: str = ""  # the node list, in Slurm's compressed form (n[1-2])
    exit_code: int | None = None
    signal: int | None = None
    elapsed: str = ""
    max_rss: str = ""

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmCommandError(
            f"`{argv[0]}` is not installed here (the Slurm backend needs Slurm's client commands)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmCommandError(f"`{argv[0]}` did not answer within {COMMAND_TIMEOUT_S:g} s") from None


def _state(text: str) -> str:
    return text.split()[0] if text.strip() else ""


def squeue(job_id: str, env: dict[str, str] | None = None) -> SlurmStatus | None:
    """The job as squeue knows it (ended jobs stay there for the cluster's MinJobAge), or None."""
    done = run(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T|%r|%N|%M"], env)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return None
        raise SlurmCommandError(f"squeue -j {job_id} failed: {done.stderr.strip() or done.returncode}")
    line = done.stdout.strip().splitlines()[:1]
    if not line:
        return None
    state, reason, nodes, elapsed = [*line[0].split("|"), "", "", ""][:4]
    reason = "" if reason in ("None", "(null)") else reason
    return SlurmStatus(job_id, _state(state), reason, "" if nodes == "(null)" else nodes, elapsed=elapsed)


def sacct(job_id: str, env: dict[str, str] | None = None) -> SlurmStatus | None:
    """The job's record in accounting (or, without a database, in the job completion log), or None."""
    # Not -X: MaxRSS is a step's (job.batch, job.0, ...), and the allocation's own line has none.
    tries = (
        ["sacct", "-n", "-P", "-j", job_id, "--format=JobID,State,ExitCode,NodeList,Elapsed,MaxRSS"],
        ["sacct", "-c", "-n", "-P", "-j", job_id, "--format=JobID,State,ExitCode,NodeList,Elapsed"],
    )
    for argv in tries:
        done = run(argv, env)
        if done.returncode == 0:
            record = sacct_record(job_id, done.stdout)
            if record is not None:
                return record
    return None


def sacct_record(job_id: str, text: str) -> SlurmStatus | None:
    """sacct -P's lines (JobID|State|ExitCode|NodeList|Elapsed[|MaxRSS]): the job's own line, with the largest
    MaxRSS among its steps."""
    rows = [[*line.split("|"), "", "", "", "", "", ""][:6] for line in text.splitlines() if line.strip()]
    own = [row for row in rows if row[0] == job_id] or [row for row in rows if "." not in row[0]]
    if not own:
        return None
    fields = own[-1]
    code, _, sig = fields[2].partition(":")
    peak = max((row[5] for row in rows if row[5]), key=rss_bytes, default="")
    return SlurmStatus(
        job_id, _state(fields[1]), nodes=fields[3], elapsed=fields[4], max_rss=peak,
        exit_code=int(code) if code.isdigit() else None, signal=int(sig) if sig.isdigit() else None,
    )  # fmt: skip


_RSS_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def rss_bytes(text: str) -> float:
    """sacct's MaxRSS ("123456K", "1.5G") in bytes; 0 for what it cannot read."""
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].isalpha() else (text, "")
    try:
        return float(number) * _RSS_UNITS.get(unit, 0)
    except ValueError:
        return 0.0


def status(job_id: str, env: dict[str, str] | None = None) -> SlurmStatus | None:
    """squeue's view while the job is known there, completed by sacct's exit code once it has ended."""
    seen = squeue(job_id, env)
    if seen is not None and not seen.ended:
        return seen
    record = sacct(job_id, env)
    if record is None:
        return seen
    if seen is not None:
        record.reason, record.nodes = seen.reason, record.nodes or seen.nodes
    return record


def find_by_name(name: str, env: dict[str, str] | None = None) -> str | None:
    """The id of a job of ours by its job name: the one sbatch answered before the worker could record it."""
    done = run(["squeue", "-h", "--states=all", "-n", name, "-o", "%i"], env)
    if done.returncode != 0:
        raise SlurmCommandError(f"squeue -n {name} failed: {done.stderr.strip() or done.returncode}")
    ids = done.stdout.split()
    return ids[-1] if ids else None


def lost_nodes(node_list: str, env: dict[str, str] | None = None) -> str:
    """Which of these nodes Slurm holds down or failing now (sinfo's compressed list), "" when none or unknown."""
    if not node_list:
        return ""
    try:
        done = run(["sinfo", "-h", "-N", "-t", "down,fail,drain,no_respond", "-n", node_list, "-o", "%N"], env)
    except SlurmCommandError:
        return ""
    return ",".join(sorted(set(done.stdout.split()))) if done.returncode == 0 else ""


def cancel(job_id: str, env: dict[str, str] | None = None, kill: bool = False) -> None:
    """scancel: Slurm sends SIGTERM to every step on every node, then SIGKILL after its KillWait."""
    argv = ["scancel", *(["--signal=KILL", "--full"] if kill else []), job_id]
    done = run(argv, env)
    gone = ("already completing or completed", "Invalid job id")  # it has ended: nothing left to stop
    if done.returncode != 0 and not any(word in done.stderr for word in gone):
        raise SlurmCommandError(f"scancel {job_id} failed: {done.stderr.strip() or done.returncode}")
