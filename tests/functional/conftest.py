"""Fixtures of the queue's functional tests: a private FLF2V_HOME per test, frames, checkpoints, and a guard
that no process of a test's renders outlives it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.functional.engine_helpers import draw_frame
from tests.functional.queue_helpers import attempt_processes, write_stub_checkpoint


@pytest.fixture
def qhome(tmp_path: Path) -> Iterator[Path]:
    """A fresh FLF2V_HOME. On teardown, any render process still tagged with it fails the test (and is killed,
    so one failure does not cascade)."""
    home = tmp_path / "flf2v-home"
    home.mkdir()
    yield home
    leftovers = attempt_processes(home)
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    assert not leftovers, f"render processes outlived the test: {[p.pid for p in leftovers]}"


@pytest.fixture(scope="session")
def qframes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("queue-frames")
    return draw_frame(folder / "first.png", (64, 64), 0.8, 0), draw_frame(folder / "last.png", (64, 64), 0.2, 60)


@pytest.fixture(scope="session")
def stub_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Passes the submit-time checks; only for the scripted engine, which loads no weights."""
    return write_stub_checkpoint(tmp_path_factory.mktemp("stub-ckpt"))


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_official_ckpt: Path) -> Path:
    """The engine's tiny random-weight checkpoint (official layout), shared with the engine's tests."""
    return Path(tiny_official_ckpt)


# ---- the TUI's tests -------------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path):
    """A real FLF2V_HOME with a job in every state and a live worker (this process), at the frozen time NOW."""
    from tests.functional.tui_world import build_world

    return build_world(tmp_path / "home")


@pytest.fixture
def no_gpu():
    """The GPU source of a machine without NVIDIA: the double stands in for NVML at its boundary only."""
    from tests.functional.tui_world import NoNvml

    return NoNvml()


@pytest.fixture
def make_app(no_gpu):
    """make_app(world, **overrides) -> Flf2vApp on the world's home, with a frozen clock and quick polls."""
    from flf2v_tui.tui.app import Flf2vApp
    from tests.functional.tui_world import NOW

    def make(world, **overrides):
        options = {"gpu_source": no_gpu, "clock": lambda: NOW, "poll_s": 0.2, "log_interval_s": 0.05, **overrides}
        app = Flf2vApp(world.home, **options)
        app.animation_level = "none"  # a tab underline caught mid-slide would make snapshots differ
        # Every notification shown, kept after its toast expires: on a loaded machine a test can look later
        # than a 4 s toast lives. Tests read `app.notes_seen` instead of the live toasts.
        app.notes_seen = []
        shown = app._notifications.add

        def add(notification):
            app.notes_seen.append(notification)
            shown(notification)

        app._notifications.add = add
        return app

    return make


@pytest.fixture
def snapshot_world(monkeypatch):
    """The TUI world at a fixed path and in UTC, with half-cell pictures, so that a snapshot never changes.
    The path is one for every run on the machine: a lock makes a second run wait for it, rather than delete
    the world from under the first one's app."""
    import fcntl
    import shutil
    import tempfile
    import time

    from tests.functional.tui_world import build_world

    root = Path(tempfile.gettempdir()) / "flf2v-tui-snapshot"
    with open(root.with_name(f"{root.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        shutil.rmtree(root, ignore_errors=True)
        monkeypatch.setenv("TZ", "UTC")
        monkeypatch.setenv("FLF2V_IMAGES", "halfcell")  # pictures drawn the same on every terminal
        time.tzset()
        yield build_world(root / "home")
        monkeypatch.undo()
        time.tzset()
        shutil.rmtree(root, ignore_errors=True)


# ---- a real Slurm (the Slurm backend's tests) --------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    """A running 2-node Slurm cluster (tests/functional/slurm_cluster.py), shared by the session's Slurm tests
    and torn down at its end; skipped with the reason where this machine cannot run one (not root, no apt)."""
    from tests.functional.slurm_cluster import SlurmCluster, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=2) as cluster:
        yield cluster
