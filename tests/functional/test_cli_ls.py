"""`flf2v ls` as a user reads it: why a queued job waits while the worker is busy, the 80-column layout, and
the columns chosen for scripts (--format, --no-header, --parsable)."""

from __future__ import annotations

import re

import pytest

from tests.functional.cli_in_process import run_cli, submit_tiny
from tests.functional.queue_helpers import SCRIPTED, flf2v, in_terminal, job_row, start_worker, stop, wait_for

LONG_PROMPT = "a grey heron lifts off the river at dawn, wings wide, mist over the water, slow camera pan"


def test_queued_jobs_say_they_wait_for_a_busy_slot_and_the_note_fits_80_columns(qhome, stub_ckpt, qframes, tmp_path):
    gate = tmp_path / "finish"
    running = submit_tiny(
        qhome, stub_ckpt, qframes, "--retries", "0", prompt=f"script: steps=3 step_s=0.05 gate={gate}"
    )
    queued = submit_tiny(qhome, stub_ckpt, qframes, prompt=LONG_PROMPT)
    _code, out, _ = run_cli(["ls", "--format", "id,note", "--parsable", "--no-header"], qhome)
    assert f"{queued}|waiting for a worker (flf2v worker)" in out.splitlines()
    worker = start_worker(qhome, "--cpu-slots", "1", engine=SCRIPTED)
    try:
        wait_for(lambda: job_row(qhome, running)["state"] == "running", what="the first job's start")
        line = f"{queued}|waiting for a CPU slot (1 busy)"
        wait_for(lambda: line in run_cli(["ls", "-o", "id,note", "-p", "--no-header"], qhome)[1].splitlines(),
                 what="the busy slot's note")  # fmt: skip
        screen = in_terminal(qhome, 80, "ls")
        row = next(r for r in screen.splitlines() if r.startswith(str(queued)))
        assert len(row) <= 80 and row.endswith("waiting for a CPU slot (1 busy)"), screen
        assert "a grey" in row and LONG_PROMPT not in row, row  # the prompt gave way, not the note
        wide = next(r for r in in_terminal(qhome, 200, "ls").splitlines() if r.startswith(str(queued)))
        assert "a grey heron lifts off the rive…" in wide  # 32 characters of prompt where there is room
        gate.touch()
        wait_for(lambda: job_row(qhome, running)["state"] == "succeeded", what="the first job's end")
    finally:
        gate.touch()
        run_cli(["cancel", str(queued)], qhome)
        stop(worker)


def test_at_80_columns_a_finished_row_and_long_labels_leave_the_default_note_whole(qhome, stub_ckpt, qframes):
    done = submit_tiny(qhome, stub_ckpt, qframes, "--retries", "0", prompt="script: steps=1")
    run = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", engine=SCRIPTED, timeout=180)
    assert run.returncode == 0 and job_row(qhome, done)["state"] == "succeeded", run.stdout + run.stderr
    queued = submit_tiny(qhome, stub_ckpt, qframes, "--label", "heron-sweep-2026-december", "--label",
                         "night-shots", prompt=LONG_PROMPT)  # fmt: skip
    screen = in_terminal(qhome, 80, "ls")
    header, *rows = screen.splitlines()
    assert header.split() == ["ID", "STATE", "LABELS", "PROMPT", "NOTE"], screen  # as the dashboard under 100
    assert all(len(line) <= 80 for line in screen.splitlines()), screen
    row = next(r for r in rows if r.startswith(str(queued)))
    assert row.endswith("waiting for a worker (flf2v worker)"), screen  # the advice too, beside `succeeded`
    assert "heron-sweep…" in row and "a grey heron" in row, screen  # labels and prompt gave way, not all of it
    assert "left out" not in screen, screen  # the narrow layout is the default's, not columns that did not fit
    wide = in_terminal(qhome, 160, "ls").splitlines()[0].split()
    assert wide == ["ID", "STATE", "GPUS", "ETA", "TIME", "LABELS", "PROMPT", "NOTE"], wide


def test_format_no_header_and_parsable(qhome, stub_ckpt, qframes):
    first = submit_tiny(qhome, stub_ckpt, qframes, "--label", "x", "--label", "y", "--base_seed",
                        "3435997493682481077", prompt="a | b\nc")  # fmt: skip
    second = submit_tiny(qhome, stub_ckpt, qframes, "--hold", prompt=LONG_PROMPT)
    code, out, err = run_cli(["ls", "--format", "id,state,label,step,eta,note,prompt", "--parsable"], qhome)
    assert code == 0, err
    assert out.splitlines() == [
        "ID|STATE|LABELS|STEP|ETA|NOTE|PROMPT",
        f"{first}|queued|x,y|-|-|waiting for a worker (flf2v worker)|a \\| b c",
        f"{second}|held|-|-|-|held|{LONG_PROMPT}",
    ]
    # At a narrow terminal a number is shown whole or not at all; only text is cut at the line's end.
    # ID(2) PROMPT(at least 6) SEED(19), two spaces between: 31 columns show the seed whole, 30 leave it out.
    for columns, shown in ((31, True), (30, False)):
        screen = in_terminal(qhome, columns, "ls", "-o", "id,prompt,seed")
        table = [line for line in screen.splitlines() if not line.startswith("(")]
        assert all(len(line) <= columns for line in table), screen
        assert ("3435997493682481077" in screen) is shown and ("SEED" in screen) is shown, screen
        assert not re.search(r"\d…", screen), screen
        # What was asked for and left out is said (on stderr), never dropped silently.
        assert ("(seed left out: terminal too narrow; --parsable shows all)" in screen) is not shown, screen
    # A column that does not fit leaves out only itself: the narrower ones after it are still shown.
    screen = in_terminal(qhome, 24, "ls", "-o", "id,seed,state,prio,note")
    assert screen.splitlines()[0].split() == ["ID", "STATE", "PRIO", "NOTE"], screen
    assert "(seed left out: terminal too narrow; --parsable shows all)" in screen, screen
    code, out, err = run_cli(["ls", "-o", "id,state", "--no-header"], qhome)
    assert [line.split() for line in out.splitlines()] == [[str(first), "queued"], [str(second), "held"]]
    # No job: a script reads nothing on stdout (as squeue -h), whichever way it asked.
    for args in (["--no-header"], ["--parsable", "--no-header"], ["-p", "--no-header", "-o", "id"]):
        code, out, err = run_cli(["ls", "--state", "running", *args], qhome)
        assert (code, out) == (0, ""), (args, out, err)
    assert run_cli(["ls", "--state", "running"], qhome)[1].strip() == "no jobs match"  # a person is told


@pytest.mark.parametrize("bad", ["id,colour", "", "id,,nope"])
def test_an_unknown_column_is_one_line_listing_the_valid_ones(qhome, bad):
    code, _out, err = run_cli(["ls", "--format", bad], qhome)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "choose from id,state,gpus,eta,time,labels,prompt,note,step" in err
