"""`flf2v service`: the systemd user unit of the worker, checked on its text and by running its ExecStart;
and, where systemd is absent, one line that says so."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from flf2v_tui.service_unit import UNIT_NAME, unit_text
from tests.functional.cli_in_process import run_cli
from tests.functional.queue_helpers import REPO, env_for


def parse_unit(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    unit.read_string(text)
    return unit


def exec_words(unit: configparser.ConfigParser) -> list[str]:
    """ExecStart as systemd splits it (its quoting is the shell's for what the unit uses), `%%` read as `%` and
    `$$` as `$`; a `$` or `%` not doubled would be a variable or a specifier to systemd."""
    line = unit["Service"]["ExecStart"]
    assert not re.search(r"(?<!\$)\$(?!\$)", line.replace("$$", "")), line
    assert not re.search(r"%[^%]", line.replace("%%", "")), line
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)]


def environment(unit: configparser.ConfigParser) -> dict[str, str]:
    words = [w.replace("%%", "%") for w in shlex.split(unit["Service"]["Environment"])]
    return dict(w.split("=", 1) for w in words)


def test_the_unit_runs_this_flf2v_worker_on_this_home_and_leaves_renders_running(tmp_path):
    home = tmp_path / "a home with 100% spaces and $HOME"
    unit = parse_unit(unit_text(home, ["--gpus", "0,1", "--on-finish", 'notify "done" $JOB 5%']))
    assert exec_words(unit) == [sys.executable, "-m", "flf2v_tui.cli", "worker", "--gpus", "0,1", "--on-finish",
                                'notify "done" $JOB 5%']  # fmt: skip
    assert "$$JOB 5%%" in unit["Service"]["ExecStart"]  # systemd would put its own $JOB there
    assert "$HOME" in unit["Service"]["Environment"]  # Environment= expands no variable: its `$` is itself
    assert environment(unit) == {"FLF2V_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    service = unit["Service"]
    assert (service["KillMode"], service["Restart"], unit["Install"]["WantedBy"]) == (
        "process",  # a stop or restart of the service leaves the renders to the next worker
        "on-failure",
        "default.target",
    )


def test_the_units_command_really_runs_the_worker(qhome):
    """Its ExecStart, with --once on an empty queue, as systemd would start it (its environment only)."""
    unit = parse_unit(unit_text(qhome, ["--once", "--cpu-slots", "1"]))
    env = {"PATH": os.defpath, "PYTHONPATH": str(REPO), "HOME": str(qhome)}
    env.update(environment(unit))
    proc = subprocess.run(exec_words(unit), capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (qhome / "flf2v.db").exists()


def test_install_print_shows_the_unit_and_checks_the_worker_options(qhome, tmp_path):
    code, out, err = run_cli(["service", "install", "--print", "--", "--cpu-slots", "2"], qhome,
                             XDG_CONFIG_HOME=str(tmp_path / "config"))  # fmt: skip
    assert code == 0, err
    first, text = out.split("\n", 1)
    assert first == f"# {tmp_path / 'config' / 'systemd' / 'user' / UNIT_NAME}"
    assert exec_words(parse_unit(text))[-3:] == ["worker", "--cpu-slots", "2"]
    assert not (tmp_path / "config").exists()  # --print changes nothing
    code, out, err = run_cli(["service", "install", "--print", "--", "--cpu-slot", "2"], qhome)
    assert code == 2 and len(err.splitlines()) == 1 and "worker options after --: No such option" in err
    # Help, or a shell-completion install, after -- is no worker option: refused, nothing printed or installed.
    for option in ("--help", "-h", "--install-completion", "--show-completion"):
        code, out, err = run_cli(["service", "install", "--print", "--", option], qhome, HOME=str(tmp_path))
        assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "worker options after --" in err, err
    assert not (tmp_path / ".bashrc").exists() and not (tmp_path / ".bash_completions").exists()


def test_install_print_makes_no_home(tmp_path):
    home = tmp_path / "not yet"
    code, out, _ = run_cli(["service", "install", "--print"], home, XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert code == 0 and f"FLF2V_HOME={home}" in out
    assert not home.exists() and not (tmp_path / "config").exists()


def test_without_systemd_each_command_says_so_in_one_line(qhome, tmp_path):
    env = {**env_for(qhome), "PATH": str(Path(sys.executable).parent), "XDG_CONFIG_HOME": str(tmp_path)}
    for command in ("install", "uninstall", "status"):
        proc = subprocess.run([sys.executable, "-m", "flf2v_tui.cli", "service", command], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=60)  # fmt: skip
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout
        assert proc.stderr.splitlines() == [
            "error: systemd is not installed here (no systemctl); run `flf2v worker` under your own supervisor "
            "instead (`flf2v service install --print` shows the unit)"
        ]
    assert not (tmp_path / "systemd").exists()
