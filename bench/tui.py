"""TUI benchmarks (figures for bench/RESULTS.md):

  - time to first paint with 10,000 jobs in the database: `flf2v tui` started in a real terminal (tmux),
    until a job row is on the screen (read with capture-pane every 10 ms);
  - time to open a 1 GB rank log and show its tail: the job view's rank tab in the app (headless, in a child
    process, once per run), until the log view draws the file's last line in a frame (its render_line
    gives that line, as Textual composes the screen), and until the whole file is indexed;
  - CPU of `flf2v tui` (in tmux) while its all-ranks tab follows 2 ranks writing 1,000 lines/s each, and how
    far behind the screen is (each line carries the time it was written).

Usage: .venv/bin/python bench/tui.py [--quick]
Everything runs in a temporary FLF2V_HOME; needs tmux for the first and the last figure.
"""

from __future__ import annotations

import argparse
import faulthandler
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.queue_speed import cpu_seconds, env_for, fill  # noqa: E402
from tests.functional.tui_world import build_world, log_line  # noqa: E402

TMUX = shutil.which("tmux")
# A fresh tmux server (socket) per start: a new session sent to a server still shutting down fails.
SOCKETS = (f"flf2v-bench-{os.getpid()}-{n}" for n in itertools.count())
SOCKET = next(SOCKETS)


def tmux(*args: str, env: dict[str, str] | None = None) -> str:
    cmd = [TMUX or "tmux", "-L", SOCKET, "-f", "/dev/null", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30).stdout


def start_tui(home: Path, *args: str) -> float:
    """`flf2v tui` in a fresh 160x50 tmux window; returns the time just before it was started."""
    env = {**env_for(home), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    command = " ".join([sys.executable, "-m", "flf2v_tui.cli", "tui", *args])
    global SOCKET
    SOCKET = next(SOCKETS)
    started = time.perf_counter()
    # remain-on-exit keeps a crashed app's last words on the screen for until()'s error message.
    args = ["new-session", "-d", "-s", "b", "-x", "160", "-y", "50", f"exec {command}", ";",
            "set-option", "-t", "b", "remain-on-exit", "on"]  # fmt: skip
    proc = subprocess.run([TMUX or "tmux", "-L", SOCKET, "-f", "/dev/null", *args], env=env, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"tmux new-session failed ({proc.returncode}): {proc.stderr.strip()}")
    return started


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", "b")


def until(predicate, timeout: float = 60, every: float = 0.01) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(every)
    raise TimeoutError(f"gave up after {timeout} s; sessions: {tmux('list-sessions')!r}; the screen was:\n{screen()}")


def bench_first_paint(root: Path, runs: int) -> list[tuple[str, str]]:
    out = []
    for label, share in (("9,900 finished + 100 queued/running", 0.99), ("all 10,000 queued", 0.0)):
        home = root / f"paint-{share}"
        fill(home, 10_000, share)
        samples = []
        for _ in range(runs + 1):  # the first run only warms the bytecode caches
            started = start_tui(home)
            shown = until(lambda: "bird number" in screen())
            samples.append(shown - started)
            tmux("kill-server")
        out.append((f"first paint, 10,000 jobs ({label})", _spread(samples[1:])))
    return out


def write_big_log(path: Path, size: int) -> str:
    """`size` bytes of engine-style lines; returns the last line."""
    block = "".join(log_line(1_767_261_000 + i, f"step {i} " + "x" * 60) for i in range(10_000)).encode()
    last = log_line(1_767_271_000, "the very last line")  # later than every line above, for the merged tab
    with open(path, "wb") as fh:
        while fh.tell() + len(block) < size:
            fh.write(block)
        fh.write(last.encode())
    return last.rstrip("\n")


def _watch_drawn(view, text: str) -> dict[str, float]:
    """Note when the view first draws a line holding `text`: render_line is what Textual calls to compose a
    frame, so this is the line on screen, not merely read into the view's cache."""
    seen: dict[str, float] = {}
    render_line = view.render_line

    def watched(y: int):
        strip = render_line(y)
        if "drawn" not in seen and text in strip.text:
            seen["drawn"] = time.perf_counter()
        return strip

    view.render_line = watched
    return seen


async def _open_big_log(home: Path, job_id: int, last: str) -> tuple[float, float, float]:
    from textual.widgets import TabbedContent

    from flf2v_tui.tui.app import Flf2vApp
    from flf2v_tui.tui.widgets.logview import LogView

    faulthandler.dump_traceback_later(120, exit=True)  # a stuck run says where, instead of hanging the bench
    app = Flf2vApp(home)
    async with app.run_test(size=(160, 50)) as pilot:
        opened = time.perf_counter()
        app.open_job(job_id)  # on its "all ranks" tab, which reads the last MiB of each rank's log
        while not app.screen.query("#view-all"):
            await pilot.pause(0.005)
        merged_drawn = _watch_drawn(app.screen.query_one("#view-all", LogView), "very last line")
        while "drawn" not in merged_drawn:
            await pilot.pause(0.005)
        merged_tail = merged_drawn["drawn"] - opened
        while not app.screen.query("Tab#--content-tab-log-r0"):
            await pilot.pause(0.01)
        view = app.screen.query_one("#view-r0", LogView)
        drawn = _watch_drawn(view, "very last line")
        started = time.perf_counter()
        app.screen.query_one(TabbedContent).active = "log-r0"
        while "drawn" not in drawn:
            await pilot.pause(0.005)
        tail = drawn["drawn"] - started
        while view.source.provisional:
            await pilot.pause(0.01)
        indexed = time.perf_counter() - started
        return tail, indexed, merged_tail


def _spread(samples: list[float]) -> str:
    """The median in ms, with the range when there are several runs."""
    median = f"{statistics.median(samples) * 1000:.0f} ms"
    return median if len(samples) == 1 else f"{median} ({min(samples) * 1000:.0f}-{max(samples) * 1000:.0f})"


def bench_big_log(root: Path, size: int, runs: int) -> list[tuple[str, str]]:
    """`runs` opens, each in a fresh process, after one untimed that warms the bytecode caches (the file
    itself is in the page cache: it was just written)."""
    world = build_world(root / "big" / "home")
    folder = world.attempt_dir("running")
    last = write_big_log(folder / "rank0.log", size)
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); from bench.tui import _open_big_log; "
        "from storage.paths import Home; from pathlib import Path; "
        "print(*asyncio.run(_open_big_log(Home(Path(sys.argv[2])), int(sys.argv[3]), sys.argv[4])))"
    )
    args = [sys.executable, "-c", code, str(REPO), str(world.home.root), str(world.ids["running"]), last]
    samples = []
    for _ in range(runs + 1):
        proc = subprocess.run(args, env=env_for(world.home.root), capture_output=True, text=True, timeout=600,
                              check=True)  # fmt: skip
        samples.append([float(x) for x in proc.stdout.split()])
    tail, indexed, merged = ([run[i] for run in samples[1:]] for i in range(3))
    gb = size / (1 << 30)
    return [
        (f"open a {gb:.1f} GiB rank log: its tail drawn", _spread(tail)),
        (f"open a {gb:.1f} GiB rank log: whole file indexed", _spread(indexed)),
        ("open the job view on it (all-ranks tab): its tail drawn", _spread(merged)),
    ]


WRITER = """
import sys, time
from tests.functional.tui_world import log_line
paths, rate, seconds = sys.argv[1:3], float(sys.argv[3]), float(sys.argv[4])
files = [open(p, "a", buffering=1) for p in paths]
start, n = time.time(), 0
while time.time() - start < seconds:
    now = time.time()
    for fh in files:
        fh.write(log_line(now, f"line {n} written at t={now:.3f} " + "x" * 40))
    n += 1
    time.sleep(max(0.0, start + n / rate - time.time()))
"""


def bench_follow(root: Path, seconds: float) -> list[tuple[str, str]]:
    world = build_world(root / "follow" / "home")
    folder = world.attempt_dir("running")
    start_tui(world.home.root, "--job", str(world.ids["running"]))
    until(lambda: "Sampling  12/50" in screen(), every=0.05)
    tui = psutil.Process(int(tmux("display-message", "-p", "-t", "b", "#{pane_pid}").strip()))
    logs = [str(folder / "rank0.log"), str(folder / "rank1.log")]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, *logs, "1000", str(seconds + 3)],
                              env=env_for(world.home.root), cwd=REPO)  # fmt: skip
    time.sleep(2)
    c0, t0, lags = cpu_seconds(tui), time.monotonic(), []
    while time.monotonic() - t0 < seconds:
        shown = [float(t) for t in re.findall(r"written at t=(\d+\.\d+)", screen())]
        if shown:
            lags.append(time.time() - max(shown))
        time.sleep(0.25)
    c1, t1 = cpu_seconds(tui), time.monotonic()
    writer.wait()
    lines = sum(Path(p).read_bytes().count(b"\n") for p in logs)
    tmux("kill-server")
    return [
        ("lines written by 2 ranks while followed", f"{lines:,} ({2 * 1000:,} lines/s)"),
        ("`flf2v tui` CPU following them (all-ranks tab)", f"{(c1 - c0) / (t1 - t0) * 100:.1f} % of one core"),
        (
            "newest line on screen, behind the writer",
            f"median {statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, a 256 MiB log, 5 s of following")
    args = parser.parse_args()
    if TMUX is None:
        sys.exit("tmux is needed (apt-get install -y tmux): two of the figures are taken in a real terminal")
    runs = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="flf2v-bench-tui-") as tmp:
        root = Path(tmp)
        results: list[tuple[str, str]] = []
        try:
            for figures in (
                lambda: bench_first_paint(root, runs),
                lambda: bench_big_log(root, (256 << 20) if args.quick else (1 << 30), runs),
                lambda: bench_follow(root, 5.0 if args.quick else 20.0),
            ):
                results += figures()
                print(*(f"  {k}: {v}" for k, v in results[-3:]), sep="\n", file=sys.stderr, flush=True)
        finally:
            tmux("kill-server")
    print(f"flf2v TUI benchmark — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; first paint and the "
          f"big log: median (range) of {runs} runs; following: one run")  # fmt: skip
    for key, value in results:
        print(f"  {key:<50}  {value}")


if __name__ == "__main__":
    main()
