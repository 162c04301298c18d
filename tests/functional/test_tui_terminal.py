"""`flf2v tui` in a real terminal: tmux runs it, the test types into it (send-keys) and reads the screen
(capture-pane): open a job, read its log, leave, quit, and the process exits 0 with the screen restored."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.functional.queue_helpers import REPO, env_for
from tests.functional.queue_helpers import wait_for as _wait_for

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed; `apt-get install -y tmux` to run flf2v tui in a real terminal"
)


def wait_for(predicate, tmux: Tmux, what: str, timeout: float = 20) -> None:
    try:
        _wait_for(predicate, timeout=timeout, every=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen was:\n{tmux.screen()}") from None


class Tmux:
    """A private tmux server (its own socket), so the test never touches a user's sessions."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"flf2v-test-{os.getpid()}"
        self.env = env

    def __call__(self, *args: str) -> str:
        cmd = [TMUX or "tmux", "-L", self.socket, "-f", "/dev/null", *args]
        return subprocess.run(cmd, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "tui", *keys)


@needs_tmux
def test_flf2v_tui_in_tmux_opens_a_job_reads_its_log_and_quits(world):
    tmux = Tmux({**env_for(world.home.root), "TERM": "xterm-256color"})
    exit_file = world.home.root / "tui.exit"
    # The pane gets a title of its own first: the TUI's probe of the terminal's graphics must leave it as it was.
    command = (f"printf '\\033]2;my shell\\033\\\\'; {shlex.quote(sys.executable)} -m flf2v_tui.cli tui; "
               f"echo $? > {shlex.quote(str(exit_file))}")  # fmt: skip
    try:
        tmux("new-session", "-d", "-s", "tui", "-x", "150", "-y", "45", command)
        tmux("set-option", "-t", "tui", "remain-on-exit", "on")
        wait_for(lambda: "a small blue bird" in tmux.screen(), tmux, "the dashboard", timeout=60)
        assert "1 worker(s), 2 slot(s)" in tmux.screen()
        # Not `Gi=…;AAAA`: tmux takes the graphics probe (an APC string) for a title, and the TUI puts it back.
        assert tmux("display-message", "-p", "-t", "tui", "#{pane_title}").strip() == "my shell"

        tmux.keys("/")
        wait_for(lambda: "filter:" in tmux.screen(), tmux, "the filter box", timeout=20)
        tmux.keys("-l", "running")
        tmux.keys("Enter")
        wait_for(lambda: "a fox runs" not in tmux.screen(), tmux, "the filter to apply", timeout=20)
        tmux.keys("Enter")
        wait_for(lambda: "stages" in tmux.screen(), tmux, "the job view", timeout=20)
        wait_for(lambda: "Sampling  12/50" in tmux.screen(), tmux, "the log's tail", timeout=20)
        screen = tmux.screen()
        assert "[r0]" in screen and "[r1]" in screen and "load 40.0s" in screen

        tmux.keys("Escape")
        wait_for(lambda: "queue ETA" in tmux.screen(), tmux, "the dashboard again", timeout=20)
        tmux.keys("q")
        dead = lambda: tmux("display-message", "-p", "-t", "tui", "#{pane_dead}").strip() == "1"  # noqa: E731
        wait_for(dead, tmux, "the app to exit")
        after = tmux.screen()
        assert exit_file.read_text().strip() == "0", after
        assert "Traceback" not in after and "a small blue bird" not in after  # the normal screen is back
    finally:
        tmux("kill-server")


def test_without_a_terminal_it_says_what_to_use_instead(world):
    proc = subprocess.run([sys.executable, "-m", "flf2v_tui.cli", "tui"], env=env_for(world.home.root), cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "needs a terminal" in proc.stderr and "flf2v logs --follow" in proc.stderr
