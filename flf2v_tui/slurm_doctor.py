"""`flf2v doctor`'s checks of the Slurm backend, run when it is configured (FLF2V_BACKEND, worker.toml or
`flf2v doctor --backend slurm`): Slurm's client commands, the controller's answer, and whether a compute node
sees FLF2V_HOME, asked of one node with a one-minute srun that gives up when no node is free soon."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flf2v_tui.doctor import Check
from flf2v_tui.worker.launchers import slurm_status
from flf2v_tui.worker.launchers.slurm_script import SlurmOptions, where_to_run
from flf2v_tui.worker.launchers.slurm_status import NOT_SHARED_FIX, SlurmCommandError

COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "srun")
WAIT_FOR_NODE_S = 20  # srun --immediate: how long the check waits for a free node before saying it could not
# File systems that compute nodes usually mount from elsewhere; anything else may be this machine's own disk.
SHARED_TYPES = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs", "smb3", "glusterfs", "wekafs")


def slurm_checks(home_root: Path, options: SlurmOptions) -> list[Check]:
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return [Check("slurm", "fail", f"{', '.join(missing)} not found on PATH",
                      "run the worker where Slurm's client commands are installed (a login node)")]  # fmt: skip
    checks = [Check("slurm", "ok", "sbatch, squeue, sacct, scancel and srun found")]
    try:
        queue = slurm_status.run(["squeue", "-h", "-o", "%i", "-u", os.environ.get("USER", "root")])
    except SlurmCommandError as exc:
        return [*checks, Check("slurm ctl", "fail", str(exc), "check SLURM_CONF and that slurmctld runs")]
    if queue.returncode != 0:
        said = (queue.stderr.strip().splitlines() or ["no answer"])[-1]
        return [*checks, Check("slurm ctl", "fail", f"squeue: {said}", "check SLURM_CONF and that slurmctld runs")]
    checks.append(Check("slurm ctl", "ok", "the controller answers squeue"))
    checks.append(_shared(home_root, options))
    return checks


def _fs_type(path: Path) -> str:
    """The type of the file system that holds `path`, from /proc/mounts (longest mount point wins)."""
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def _shared(home_root: Path, options: SlurmOptions) -> Check:
    token = home_root / "jobs" / ".doctor-shared-check"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("flf2v doctor\n")
    kind = _fs_type(home_root)
    argv = [
        "srun", "--nodes=1", "--ntasks=1", f"--immediate={WAIT_FOR_NODE_S}", "--time=1",
        *where_to_run(options),
        "test", "-f", str(token),
    ]  # fmt: skip
    try:
        done = slurm_status.run(argv)
    except SlurmCommandError as exc:
        done = None
        said = str(exc)
    finally:
        token.unlink(missing_ok=True)
    fix = NOT_SHARED_FIX
    if done is not None and done.returncode == 0:
        return Check("shared", "ok", f"a compute node sees {home_root} ({kind})")
    if done is not None and done.returncode == 1 and not done.stderr.strip():
        return Check("shared", "fail", f"a compute node does not see {home_root} ({kind})", fix)
    if done is not None:
        said = (done.stderr.strip().splitlines() or [f"srun exited {done.returncode}"])[-1]
    guess = "usually shared" if kind.split(".")[0] in SHARED_TYPES else "may be this machine's own disk"
    return Check("shared", "warn", f"could not ask a node ({said}); {home_root} is {kind}, which {guess}", fix)
