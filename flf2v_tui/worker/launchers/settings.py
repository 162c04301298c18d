"""Which launcher a worker uses and its Slurm settings: the command line first, then FLF2V_* environment
variables, then FLF2V_HOME/worker.toml, e.g.

    backend = "slurm"
    [slurm]
    partition = "gpu"
    account = "vision"
    time = "2:00:00"
    sbatch_args = ["--qos=normal", "--constraint=a100"]

Every problem is one line naming the setting and where it came from (BadInputError: exit 2).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from flf2v_tui.worker.launchers import BACKENDS
from flf2v_tui.worker.launchers.slurm_script import SlurmOptions

CONFIG_FILE = "worker.toml"
ENV_PREFIX = "FLF2V_SLURM_"


@dataclass
class LauncherSettings:
    backend: str
    slurm: SlurmOptions


def _file(home_root: Path) -> dict[str, Any]:
    path = home_root / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        import tomllib  # Python 3.11 and later
    except ImportError:
        raise BadInputError(f"{path}: reading it needs Python 3.11 or later; use the options instead") from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInputError(f"{path}: {exc}") from None


def resolve(
    home_root: Path,
    *,
    backend: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    time_limit: str | None = None,
    sbatch_args: list[str] | None = None,
    cpu_slots: int | None = None,
) -> LauncherSettings:
    """The worker's launcher settings. `cpu_slots` with the Slurm backend: nodes without GPUs render on their
    CPUs, and this many jobs are kept submitted at once."""
    config = _file(home_root)
    section = config.get("slurm", {})
    if not isinstance(section, dict):
        raise BadInputError(f"{home_root / CONFIG_FILE}: [slurm] must be a table")
    env = os.environ

    def pick(given: Any, name: str) -> Any:
        if given is not None:
            return given
        if env.get(ENV_PREFIX + name.upper()):
            return env[ENV_PREFIX + name.upper()]
        return section.get(name)

    chosen = backend or env.get("FLF2V_BACKEND") or config.get("backend") or "local"
    if chosen not in BACKENDS:
        raise BadInputError(f"--backend {chosen!r}: expected one of {', '.join(BACKENDS)}")
    extra: Any = sbatch_args or None
    if extra is None and env.get(ENV_PREFIX + "SBATCH_ARGS"):
        extra = shlex.split(env[ENV_PREFIX + "SBATCH_ARGS"])
    if extra is None:
        extra = section.get("sbatch_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise BadInputError(f"{home_root / CONFIG_FILE}: sbatch_args must be a list of strings")
    for arg in extra:
        if not arg.startswith("-"):
            raise BadInputError(f"--sbatch-arg {arg!r}: expected an sbatch option such as --qos=normal")
    options = SlurmOptions(
        partition=pick(partition, "partition"),
        account=pick(account, "account"),
        time=pick(time_limit, "time"),
        sbatch_args=list(extra),
        device="cpu" if cpu_slots is not None else str(pick(None, "device") or "cuda"),
        max_jobs=cpu_slots if cpu_slots is not None else int(pick(None, "max_jobs") or 16),
        # At least half a second: a worker must never hammer the cluster's controller.
        poll_s=max(0.5, float(pick(None, "poll_s") or 2.0)),
    )
    if options.device not in ("cuda", "cpu"):
        raise BadInputError(f"Slurm device {options.device!r}: expected cuda or cpu")
    if options.max_jobs < 1:
        raise BadInputError("the Slurm backend needs at least 1 job slot (--cpu-slots / max_jobs)")
    for name in ("partition", "account", "time"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, str) or not value.strip() or "\n" in value):
            raise BadInputError(f"Slurm {name} {value!r}: expected one word, e.g. --{name} ...")
    return LauncherSettings(chosen, options)
