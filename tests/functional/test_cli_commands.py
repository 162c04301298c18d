"""The other `flf2v` commands as a user runs them: steering queued jobs, retry with changes, help, gpus, doctor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.queue_helpers import REPO, attempt_rows, env_for, flf2v, job_row

COMMANDS = ("submit", "retry", "edit", "ls", "show", "wait", "logs", "cancel", "hold", "release", "top", "rm", "pause",
            "resume", "worker", "gpus", "doctor", "demo", "tui", "videos", "service")  # fmt: skip


def command_paths() -> list[tuple[str, ...]]:
    """Every command of the CLI as a user types it: groups, and each subcommand under them."""
    import typer.main

    from flf2v_tui.cli import app

    def walk(command, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        below = getattr(command, "commands", {})
        return [prefix, *(p for name, sub in sorted(below.items()) for p in walk(sub, (*prefix, name)))]

    return walk(typer.main.get_command(app), ())[1:]


def submit(home, ckpt, frames, *extra: str) -> int:
    proc = flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--prompt", "a heron lands", "-q", *extra)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def test_the_command_tree_is_the_documented_one():
    assert {p[0] for p in command_paths()} == set(COMMANDS)
    assert ("videos", "rerun") in command_paths()


@pytest.mark.parametrize("command", command_paths(), ids=" ".join)
def test_every_command_has_help_with_an_example(command, qhome):
    proc = flf2v(qhome, *command, "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout, proc.stdout + proc.stderr


def test_steering_queued_jobs(qhome, stub_ckpt, qframes):
    a, b, c = (submit(qhome, stub_ckpt, qframes) for _ in range(3))
    assert flf2v(qhome, "top", str(c)).returncode == 0
    assert flf2v(qhome, "hold", str(b)).returncode == 0
    queued = json.loads(flf2v(qhome, "ls", "--json").stdout)
    assert [(j["id"], j["display_state"]) for j in queued] == [(c, "queued"), (a, "queued"), (b, "held")]
    assert flf2v(qhome, "release", str(b)).returncode == 0
    assert flf2v(qhome, "hold", "999").returncode == 2
    assert "has not started yet" in flf2v(qhome, "logs", str(a)).stderr
    assert flf2v(qhome, "cancel", f"{a}..{b}").returncode == 0
    assert {job_row(qhome, j)["state"] for j in (a, b)} == {"cancelled"}
    assert flf2v(qhome, "show", str(a)).returncode == 1  # cancelled
    assert flf2v(qhome, "rm", str(a)).returncode == 0
    assert not (qhome / "jobs" / str(a)).exists()
    assert flf2v(qhome, "show", str(a)).returncode == 2
    plain = flf2v(qhome, "ls", "--all").stdout
    assert "\x1b[" not in plain and "cancelled" in plain


def test_retry_with_changed_flags_keeps_the_history(qhome, stub_ckpt, qframes, tmp_path):
    job = submit(qhome, stub_ckpt, qframes, "--base_seed", "3")
    assert flf2v(qhome, "retry", str(job)).returncode == 2  # still queued: nothing to retry
    flf2v(qhome, "cancel", str(job))
    new_last = tmp_path / "other.png"
    new_last.write_bytes(qframes[0].read_bytes())
    proc = flf2v(qhome, "retry", str(job), "--base_seed", "7", "--sample-steps", "3", "--last_frame", str(new_last),
                 "--gpus", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    row = job_row(qhome, job)
    assert (row["state"], row["base_seed"], row["sample_steps"], row["gpus"]) == ("queued", 7, 3, 2)
    assert row["last_frame_src"] == str(new_last) and row["last_frame"].endswith("last-1.png")
    assert (qhome / "jobs" / str(job) / "inputs" / "last.png").exists()  # the first recipe's frame is kept
    flf2v(qhome, "cancel", str(job))
    bad = flf2v(qhome, "retry", str(job), "--frame_num", "8")
    assert bad.returncode == 2 and "4n+1" in bad.stderr
    assert attempt_rows(qhome, job) == []


def test_gpus_and_doctor_without_nvidia(qhome):
    gpus = flf2v(qhome, "gpus")
    assert gpus.returncode == 0 and "No NVIDIA GPU here" in gpus.stdout and "CPU slots" in gpus.stdout
    assert json.loads(flf2v(qhome, "gpus", "--json").stdout)["gpus"] == []
    doctor = flf2v(qhome, "doctor", timeout=180)
    assert "python" in doctor.stdout and "database" in doctor.stdout and "ffmpeg" in doctor.stdout
    assert "fix: start one: flf2v worker" in doctor.stdout
    assert doctor.returncode == (1 if "FAIL" in doctor.stdout else 0)


def _run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI with exactly these colour variables (env_for sets NO_COLOR; here it is only what is given)."""
    full = env_for(home, **env)
    if "NO_COLOR" not in env:
        full.pop("NO_COLOR")
    full.pop("FORCE_COLOR", None) if "FORCE_COLOR" not in env else None
    return subprocess.run([sys.executable, "-m", "flf2v_tui.cli", *args], capture_output=True, text=True,
                          env=full, cwd=REPO, timeout=60)  # fmt: skip


def _colour_codes(text: str) -> list[str]:
    """SGR parameters that set a colour (30-49, 90-107); bold or dim alone is not colour."""
    params = [p for m in re.finditer(r"\x1b\[([0-9;]*)m", text) for p in m.group(1).split(";") if p]
    return [p for p in params if 30 <= int(p) <= 49 or 90 <= int(p) <= 107]


def test_no_color_wins_over_force_color(qhome, stub_ckpt, qframes):
    job = submit(qhome, stub_ckpt, qframes)
    flf2v(qhome, "cancel", str(job))  # a finished row, which ls paints
    forced = _run(qhome, "ls", FORCE_COLOR="1")
    assert _colour_codes(forced.stdout), "FORCE_COLOR without NO_COLOR should colour even without a TTY"
    for args in (("ls",), ("show", str(job)), ("ls", "--help")):
        out = _run(qhome, *args, NO_COLOR="1", FORCE_COLOR="1").stdout
        assert _colour_codes(out) == [], (args, out)
    assert "\x1b[" not in _run(qhome, "ls", NO_COLOR="1", FORCE_COLOR="1").stdout
    # An empty NO_COLOR is unset (no-color.org), for our tables and the help screens alike.
    assert _colour_codes(_run(qhome, "ls", NO_COLOR="", FORCE_COLOR="1").stdout)
    assert "\x1b[" not in _run(qhome, "ls").stdout  # no TTY, no variables: plain


def test_shell_completion(qhome):
    script = Path(sys.executable).parent / "flf2v"
    env = env_for(qhome, _FLF2V_COMPLETE="complete_bash", COMP_WORDS="flf2v su", COMP_CWORD="1")
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["submit"], proc.stdout + proc.stderr
    env.update(COMP_WORDS="flf2v videos re", COMP_CWORD="2")
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.split() == ["rerun"], proc.stdout + proc.stderr
    env = env_for(qhome, _FLF2V_COMPLETE="source_bash")
    source = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "complete" in source and "_flf2v_completion" in source
