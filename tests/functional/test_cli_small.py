"""Issue 16's smaller CLI defects: wait on a held job, option names at 80 columns, `flf2v service`."""

from __future__ import annotations

import re

import pytest

from tests.functional.cli_in_process import run_cli, submit_tiny
from tests.functional.test_catalogue_cli import cli_options
from tests.functional.test_cli_commands import command_paths


def test_wait_on_a_held_job_says_it_is_held(qhome, stub_ckpt, qframes):
    held = submit_tiny(qhome, stub_ckpt, qframes, "--hold")
    code, _, err = run_cli(["wait", str(held), "--timeout", "0.3", "-q"], qhome)
    assert code == 1
    assert err.strip() == (
        f"timed out after 0.3 s; job {held} is held and never starts until released (flf2v release {held})"
    )
    after = submit_tiny(qhome, stub_ckpt, qframes, "--after", str(held))
    code, _, err = run_cli(["wait", str(after), "--timeout", "0.3", "-q"], qhome)
    assert code == 1 and err.strip() == f"timed out after 0.3 s; job {after} is held: it waits (after {held})"
    run_cli(["release", str(held)], qhome)
    code, _, err = run_cli(["wait", str(held), "--timeout", "0.3", "-q"], qhome)
    assert code == 1 and err.strip() == f"timed out after 0.3 s; job {held} is queued"


@pytest.mark.parametrize("command", [(), *command_paths()], ids=lambda c: " ".join(c) or "flf2v")
def test_help_at_80_columns_never_cuts_an_option_name(command, qhome):
    code, out, err = run_cli([*command, "--help"], qhome, COLUMNS="80", NO_COLOR="1")
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, out
    words = {w for line in lines for w in re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", line)}
    spellings = {s for s in cli_options(*command) if s.startswith("-")}
    assert spellings <= words, sorted(spellings - words)
    assert not re.search(r"--?[\w-]+…", out), out


@pytest.mark.parametrize("group", [[], ["videos"], ["service"]])
def test_a_group_without_a_command_prints_its_help_once(group, qhome):
    code, out, err = run_cli(group, qhome, COLUMNS="80")
    assert code == 0 and err == "", err
    assert out.count("Usage:") == 1 and out.count("Commands") == 1, out
