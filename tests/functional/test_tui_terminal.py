"""`flf2v tui` in a real terminal: tmux runs it, the test types into it (send-keys) and reads the screen
(capture-pane): open a job, read its log, leave, quit, and the process exits 0 with the screen restored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.functional.queue_helpers import REPO, env_for, wait_for

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed; `apt-get install -y tmux` to run flf2v tui in a real terminal"
)


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
    command = f"{sys.executable} -m flf2v_tui.cli tui"
    try:
        tmux("new-session", "-d", "-s", "tui", "-x", "150", "-y", "45", command)
        tmux("set-option", "-t", "tui", "remain-on-exit", "on")
        wait_for(lambda: "a small blue bird" in tmux.screen(), timeout=60, every=0.2, what="the dashboard")
        assert "1 worker(s), 2 slot(s)" in tmux.screen()

        tmux.keys("/")
        wait_for(lambda: "filter:" in tmux.screen(), timeout=20, every=0.2, what="the filter box")
        tmux.keys("-l", "running")
        tmux.keys("Enter")
        wait_for(lambda: "a fox runs" not in tmux.screen(), timeout=20, every=0.2, what="the filter to apply")
        tmux.keys("Enter")
        wait_for(lambda: "stages" in tmux.screen(), timeout=20, every=0.2, what="the job view")
        wait_for(lambda: "Sampling  12/50" in tmux.screen(), timeout=20, every=0.2, what="the log's tail")
        screen = tmux.screen()
        assert "[r0]" in screen and "[r1]" in screen and "load 40.0s" in screen

        tmux.keys("Escape")
        wait_for(lambda: "queue ETA" in tmux.screen(), timeout=20, every=0.2, what="the dashboard again")
        tmux.keys("q")
        wait_for(lambda: tmux("display-message", "-p", "-t", "tui", "#{pane_dead}").strip() == "1", timeout=20,
                 every=0.2, what="the app to exit")  # fmt: skip
        status = tmux("display-message", "-p", "-t", "tui", "#{pane_dead_status}").strip()
        after = tmux.screen()
        assert status == "0", after
        assert "Traceback" not in after and "a small blue bird" not in after  # the normal screen is back
    finally:
        tmux("kill-server")


def test_without_a_terminal_it_says_what_to_use_instead(world):
    proc = subprocess.run([sys.executable, "-m", "flf2v_tui.cli", "tui"], env=env_for(world.home.root), cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "needs a terminal" in proc.stderr and "flf2v logs --follow" in proc.stderr
