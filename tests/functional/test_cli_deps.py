"""Dependencies as Slurm has them: --after (afterok), --after-any (afterany) and --after-fail (afternotok),
through real submits and a real worker running the scripted engine."""

from __future__ import annotations

import json

from tests.functional.cli_in_process import run_cli, submit_tiny
from tests.functional.queue_helpers import SCRIPTED, flf2v, job_row


def test_after_any_and_after_fail_start_on_a_failure_and_after_says_it_never_will(qhome, stub_ckpt, qframes):
    failing = submit_tiny(qhome, stub_ckpt, qframes, "--retries", "0", prompt="script: steps=1 fail=exit")
    on_any = submit_tiny(
        qhome, stub_ckpt, qframes, "--after-any", str(failing), "--retries", "0", prompt="script: steps=1"
    )
    on_fail = submit_tiny(
        qhome, stub_ckpt, qframes, "--after-fail", str(failing), "--retries", "0", prompt="script: steps=1"
    )
    on_success = submit_tiny(
        qhome, stub_ckpt, qframes, "--after", str(failing), "--retries", "0", prompt="script: steps=1"
    )
    shown = run_cli(["show", str(on_fail)], qhome)[1]
    assert f"job {on_fail}: held — after-fail {failing}" in shown and f"after      {failing} failed" in shown
    waits = {j["id"]: j["waiting_on"] for j in json.loads(run_cli(["ls", "--json"], qhome)[1])}
    assert (waits[on_any], waits[on_fail], waits[on_success]) == tuple(
        f"{kind} {failing}" for kind in ("after-any", "after-fail", "after")
    )  # --json carries each dependency's kind, as the NOTE says it
    run = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", engine=SCRIPTED, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    states = {j: job_row(qhome, j)["state"] for j in (failing, on_any, on_fail, on_success)}
    assert states == {failing: "failed", on_any: "succeeded", on_fail: "succeeded", on_success: "queued"}
    never = f"never starts: job {failing} failed (retry it, or cancel this job)"
    (listed,) = json.loads(run_cli(["ls", "--json", "--state", "held"], qhome)[1])
    assert (listed["id"], listed["note"]) == (on_success, never)
    assert f"job {on_success}: held — {never}" in run_cli(["show", str(on_success)], qhome)[1]
    code, _, err = run_cli(["wait", str(on_success), "--timeout", "0.2", "-q"], qhome)
    assert code == 1 and err.strip() == f"timed out after 0.2 s; job {on_success} {never}"
    # A job already finished the wrong way is refused at submit, naming the option, as --after always was.
    done = on_any
    for option, verb in (("--after", None), ("--after-fail", "fail")):
        code, _, err = run_cli(["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--first_frame",
                                str(qframes[0]), "--last_frame", str(qframes[1]), "--prompt", "x",
                                option, str(failing if verb is None else done)], qhome)  # fmt: skip
        target, state, word = (failing, "failed", "succeed") if verb is None else (done, "succeeded", "fail")
        assert code == 2 and err.strip() == (
            f"error: {option} {target}: job {target} {state}, so it will never {word}; retry job {target} first, "
            "or wait for it another way (--after, --after-any, --after-fail)"
        ), err
    code, _, err = run_cli(["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--first_frame",
                            str(qframes[0]), "--last_frame", str(qframes[1]), "--prompt", "x", "--after-any",
                            "999"], qhome)  # fmt: skip
    assert code == 2 and err.strip() == "error: --after-any 999: there is no job 999 (see flf2v ls --all)"


def test_one_job_under_two_kinds_of_dependency_is_refused_naming_both(qhome, stub_ckpt, qframes):
    first = submit_tiny(qhome, stub_ckpt, qframes, "--hold", prompt="x")
    code, _out, err = run_cli(["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--first_frame",
                              str(qframes[0]), "--last_frame", str(qframes[1]), "--prompt", "y",
                              "--after", str(first), "--after-fail", str(first)], qhome)  # fmt: skip
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"--after {first} and --after-fail {first} contradict each other" in err
    assert [j["id"] for j in json.loads(run_cli(["ls", "--json"], qhome)[1])] == [first]  # nothing queued
