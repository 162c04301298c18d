"""Which launcher a worker uses and its Slurm settings: the command line first, then FLF2V_* environment
variables, then FLF2V_HOME/worker.toml, e.g.

    backend = "slurm"
    [slurm]
    partition = "gpu"
    account = "vision"
    time = "2:00:00"
    cpus_per_gpu = 8
    sbatch_args = ["--qos=normal", "--constraint=a100"]

Every problem is one line naming the setting and where it came from (BadInputError: exit 2).
"""

from __future__ import annotations

import math
import os
import re
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

    def pick_from(given: Any, name: str, flag: str | None = None) -> tuple[Any, str]:
        """The value and where it came from, for a one-line message about it."""
        if given is not None:
            return given, flag or f"--{name.replace('_', '-')}"
        if env.get(ENV_PREFIX + name.upper()):
            return env[ENV_PREFIX + name.upper()], ENV_PREFIX + name.upper()
        return section.get(name), f"{home_root / CONFIG_FILE} [slurm] {name}"

    def pick(given: Any, name: str) -> Any:
        return pick_from(given, name)[0]

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
        max_jobs=_whole(*pick_from(cpu_slots, "max_jobs", "--cpu-slots"), default=16, what="Slurm jobs"),
        cpus_per_gpu=_whole(*pick_from(None, "cpus_per_gpu"), default=4, what="CPUs per GPU"),
        poll_s=_interval(*pick_from(None, "poll_s"), default=2.0),
    )
    if options.device not in ("cuda", "cpu"):
        raise BadInputError(f"Slurm device {options.device!r}: expected cuda or cpu")
    for name in ("partition", "account", "time"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, str) or not _ONE_WORD.fullmatch(value)):
            raise BadInputError(f"Slurm {name} {value!r}: expected one word, e.g. --{name} ...")
    if chosen == "slurm" and not _SBATCH_PATH.fullmatch(str(home_root)):
        raise BadInputError(
            f"FLF2V_HOME {str(home_root)!r}: the Slurm backend needs a path without spaces, control characters or %"
            " (sbatch reads --output's % as a file name pattern); choose another folder on the shared file system"
        )
    for arg in options.sbatch_args:
        if not _ONE_WORD.fullmatch(arg):
            raise BadInputError(
                f"--sbatch-arg {arg!r}: no spaces or control characters inside one option (use --qos=normal)"
            )
    return LauncherSettings(chosen, options)


# One #SBATCH line each: a space would end the value, a newline would start a line of the script.
_ONE_WORD = re.compile(r"[^\s\x00-\x1f\x7f]+")
# The attempt folders' paths go into #SBATCH --output/--chdir as they are.
_SBATCH_PATH = re.compile(r"[^\s\x00-\x1f\x7f%]+")
# At least half a second: a worker must never hammer the cluster's controller.
MIN_POLL_S = 0.5


def _whole(value: Any, source: str, *, default: int, what: str) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        number = -1
    if number < 1:
        raise BadInputError(f"{source} = {value!r}: expected a whole number of {what}, at least 1")
    return number


def _interval(value: Any, source: str, *, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < MIN_POLL_S:
        raise BadInputError(f"{source} = {value!r}: expected seconds between Slurm polls, at least {MIN_POLL_S:g}")
    return seconds
