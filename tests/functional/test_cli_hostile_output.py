"""Control characters that a person put in a job (prompt, negative prompt, label, save path) reach no terminal
through the CLI or the worker: `--json` escapes every one and reads back to the same strings, and every line
for a person (errors, `wait`, the worker's own lines, messages) is inert. Real processes on a real home, the
scripted engine under real torchrun. The TUI and the tables of ls, show and videos: test_tui_hostile_text.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.functional.queue_helpers import REPO, SCRIPTED, env_for

# ESC sequences (CSI, OSC with BEL, SGR), C1 controls (CSI U+009B, OSC U+009D ended by ST U+009C, NEL U+0085),
# DEL, backspace, carriage return and BEL.
CONTROLS = "\x1b[2J\x1b]0;pwned\x07 \x9b31m \x9d8;;x\x9c \x85 \x7f \x08\r bell\x07 \x1b[31mred\x1b[0m"
# Bytes a terminal acts on: C0 but newline and tab, and DEL; and, once decoded, the C1 code points (as bytes
# they are also UTF-8 continuation bytes, so they are looked for as characters).
C0_OR_DEL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
C1 = re.compile(r"[\x80-\x9f]")


def run(home: Path, *args: str, engine: str | None = None) -> tuple[int, str, str]:
    """The CLI in its own process, its output taken as bytes (text mode would turn a carriage return into a
    newline), and checked: not one control character on stdout or stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "flf2v_tui.cli", *args],
        capture_output=True,
        env=env_for(home, engine),
        cwd=REPO,
        timeout=120,
    )
    for stream in (proc.stdout, proc.stderr):
        assert not C0_OR_DEL.search(stream), (args, stream)
        assert not C1.search(stream.decode()), (args, stream)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_hostile_text_reaches_no_terminal(qhome, stub_ckpt, qframes, tmp_path):
    prompt, neg, label = f"script: steps=2 step_s=0.01 {CONTROLS}", f"blurry {CONTROLS}", f"lab{CONTROLS}"
    save = tmp_path / f"out {CONTROLS}.mp4"
    submit = ["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--gpus", "1", "-q"]

    # A submit that fails echoes the path it could not use: one inert line, exit 2, nothing queued.
    missing = tmp_path / f"missing {CONTROLS}.png"
    code, out, err = run(qhome, *submit, "--first_frame", str(missing), "--last_frame", str(qframes[1]),
                         "--prompt", "x")  # fmt: skip
    assert (code, out, len(err.splitlines())) == (2, "", 1) and "missing" in err, err
    # A usage error quotes the argument it could not use.
    code, _, err = run(qhome, "ls", f"--bogus{CONTROLS}")
    assert code == 2 and "--bogus" in err

    hostile = ["--prompt", prompt, "--neg_prompt", neg, "--label", label, "--save_file", str(save)]
    code, out, err = run(qhome, *submit, "--first_frame", str(qframes[0]), "--last_frame", str(qframes[1]), *hostile)
    assert code == 0, err
    job = int(out)

    # The worker's own lines name the video it wrote, by the path the person gave.
    code, out, err = run(qhome, "worker", "--once", "--cpu-slots", "1", engine=SCRIPTED)
    assert code == 0 and f"job {job} attempt 1 succeeded" in out and "out " in out and "bell red.mp4" in out, out
    code, out, _ = run(qhome, "wait", str(job))
    assert code == 0 and f"job {job} succeeded: " in out and "bell red.mp4" in out, out

    # JSON: every control escaped, and the exact strings come back.
    (row,) = [r for r in json.loads(run(qhome, "ls", "--json", "--all")[1]) if r["id"] == job]
    assert (row["prompt"], row["labels"], row["output_path"]) == (prompt, [label], str(save))
    code, out, _ = run(qhome, "show", "--json", str(job))
    shown = json.loads(out)
    assert (shown["prompt"], shown["neg_prompt"], shown["labels"], shown["output_path"]) == (
        prompt, neg, [label], str(save),
    )  # fmt: skip
    (video,) = json.loads(run(qhome, "videos", "ls", "--json")[1])
    assert (video["prompt"], video["neg_prompt"], video["path"], video["tags"]) == (prompt, neg, str(save), [label])
    one = json.loads(run(qhome, "videos", "show", "--json", str(video["id"]))[1])
    assert (one["prompt"], one["neg_prompt"], one["path"], one["tags"]) == (prompt, neg, str(save), [label])

    # Messages that quote a tag or a path.
    code, out, _ = run(qhome, "videos", "tag", str(video["id"]), f"tag{CONTROLS}")
    assert code == 0 and out.startswith(f"video {video['id']}: tags lab") and "bell red, tag" in out, out
    code, out, _ = run(qhome, "videos", "open", str(video["id"]), "--print")
    assert code == 0 and out.startswith(str(tmp_path)) and out.rstrip().endswith("bell red.mp4"), out
