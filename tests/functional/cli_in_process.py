"""The real `flf2v` CLI run inside the test's own process (flf2v_tui.cli.main, what the installed script
calls): a few milliseconds a run instead of a new interpreter's half second, for tests of many inputs."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

from flf2v_tui.cli import main
from storage.db import connect


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_cli(argv: list[str], home: Path, **env: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `flf2v ARGV` with FLF2V_HOME=home. An exception that escapes main() is
    a traceback a user would see, so it is not caught here: the test fails with it."""
    out, err = io.StringIO(), io.StringIO()
    with environment(FLF2V_HOME=str(home), **env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def count_jobs(home: Path) -> int:
    if not (home / "flf2v.db").exists():
        return 0
    conn = connect(home / "flf2v.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()


def submit_tiny(home: Path, ckpt: Path, frames: tuple[Path, Path], *extra: str, prompt: str = "a heron lands") -> int:
    """`flf2v submit` of a flf2v-tiny job (for any worker: --other-worker) in-process; its job id."""
    code, out, err = run_cli(["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame",
                              str(frames[0]), "--last_frame", str(frames[1]), "--prompt", prompt, "-q",
                              "--other-worker", *extra], home)  # fmt: skip
    assert code == 0, err
    return int(out)
