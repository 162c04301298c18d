"""The peer watch in real processes: a lost peer interrupts the main thread, a hung wait ends the process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import torch

from engine.errors import PeerLostError
from engine.generate import failure_of
from engine.parallel.watch import Peer, PeerWatch
from engine.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]

LOST_PEER = """
    import os, signal, socket, subprocess, sys, threading, time
    import psutil
    from engine.errors import PeerLostError
    from engine.failures import install_signal_handlers, set_peer_probe
    from engine.parallel.watch import Peer, PeerWatch

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    peer = Peer(1, socket.gethostname(), child.pid, psutil.Process(child.pid).create_time())
    far = Peer(2, "another-host", 1, 0.0)  # on another host: left to the collectives' timeout
    install_signal_handlers()
    watch = PeerWatch(0, [peer, far], report=lambda exc: None, timeout_s=60, interval_s=0.05).start()
    set_peer_probe(watch.lost_peer)
    assert watch.lost_peer() is None
    threading.Timer(0.5, child.kill).start()
    started = time.monotonic()
    try:
        time.sleep(30)
    except PeerLostError as exc:
        print(json.dumps({"seconds": time.monotonic() - started, "message": str(exc)}))
"""


def test_a_lost_peer_interrupts_the_main_thread_with_its_name():
    code = "import json\n" + textwrap.dedent(LOST_PEER)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["seconds"] < 5
    assert result["message"].startswith("rank 1 (pid ") and "rank1.log" in result["message"]


REPORTED_BEFORE_AN_ABORT = """
    import os, signal, socket, subprocess, sys, time
    import psutil
    from engine.failures import classify
    from engine.parallel.watch import Peer, PeerWatch
    from engine.telemetry import EventWriter

    events = EventWriter(sys.argv[1], 0)

    def report(exc):
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback="", **{"class": classify(exc)})

    # As on NCCL: the process ends (its communicator aborts) before the main thread can report anything.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(1))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    peer = Peer(1, socket.gethostname(), child.pid, psutil.Process(child.pid).create_time())
    PeerWatch(0, [peer], report=report, timeout_s=60, interval_s=0.05).start()
    child.kill()
    time.sleep(30)
"""


def test_the_watch_writes_the_loss_before_it_interrupts_the_main_thread(tmp_path):
    events = tmp_path / "events.jsonl"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(REPORTED_BEFORE_AN_ABORT), str(events)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    assert (event["kind"], event["type"], event["class"]) == ("error", "PeerLostError", "comm")
    assert event["message"].startswith("rank 1 (pid ")


HUNG = """
    import sys, time
    from engine.failures import classify
    from engine.parallel.watch import PeerWatch
    from engine.telemetry import EventWriter

    events = EventWriter(sys.argv[1], 0)

    def report(exc):
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback="", **{"class": classify(exc)})

    watch = PeerWatch(0, [], report=report, timeout_s=1.0, interval_s=0.05).start()
    with watch.waiting("a test barrier"):
        time.sleep(60)  # a collective that never returns
"""


def test_a_hung_wait_becomes_a_comm_error_event_and_ends_the_process(tmp_path):
    events = tmp_path / "events.jsonl"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(HUNG), str(events)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 30
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    assert (event["kind"], event["type"], event["class"]) == ("error", "CollectiveTimeout", "comm")
    assert "in a test barrier" in event["message"] and "FLF2V_DIST_TIMEOUT" in event["message"]


FOUND_BY_THE_SIGNAL_HANDLER = """
    import socket, subprocess, sys, time
    import psutil
    from engine.parallel.watch import Peer, PeerWatch

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    peer = Peer(1, socket.gethostname(), child.pid, psutil.Process(child.pid).create_time())
    watch = PeerWatch(0, [peer], report=lambda exc: print("ended by the watch", flush=True), timeout_s=60,
                      interval_s=0.05, grace_s=5.0).start()
    child.kill()
    child.wait()
    assert watch.lost_peer() is not None  # torchrun's SIGTERM came first: the handler's probe finds the loss
    watch.unwinding()  # and the main thread starts reporting it
    time.sleep(1.0)
    print("the report had its grace", flush=True)
"""


def test_a_loss_found_by_the_main_thread_still_gets_its_grace():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FOUND_BY_THE_SIGNAL_HANDLER)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["the report had its grace"]


SIGNAL_WHILE_REPORTING = """
    import os, signal, time
    from engine.failures import Killed, install_signal_handlers, reporting_failure

    install_signal_handlers()
    try:
        raise RuntimeError("Connection closed by peer")  # a peer died: the collective fails
    except RuntimeError:
        with reporting_failure():
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun stops the surviving ranks meanwhile
            time.sleep(0.2)  # the handler runs here
            print("report written", flush=True)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except Killed:
        print("a signal after the report still stops the process", flush=True)
"""


def test_a_termination_signal_does_not_cut_the_failure_report_short():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SIGNAL_WHILE_REPORTING)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["report written", "a signal after the report still stops the process"]


def test_a_collective_failing_before_the_dead_peer_is_seen_gone_is_still_reported_as_its_loss():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        peer = Peer(1, socket.gethostname(), child.pid, psutil.Process(child.pid).create_time())
        # Not started: its thread would signal this process. The main thread's own check is what is tested.
        watch = PeerWatch(0, [peer], report=lambda exc: None, timeout_s=60)
        runtime = Runtime(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), watch=watch)
        # gloo saw the peer's sockets close while its process was still exiting.
        threading.Timer(0.3, child.kill).start()
        exc, failure = failure_of(RuntimeError("Connection closed by peer"), runtime)
    finally:
        child.kill()
        child.wait()
    assert failure == "comm"
    assert isinstance(exc, PeerLostError) and str(exc).startswith("rank 1 (pid "), exc


FAILED_RANK = """
    import os, sys, time
    from datetime import timedelta
    import torch
    import torch.distributed as dist
    from engine.failures import leave
    from engine.runtime import Runtime

    rank, store = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    if rank == 1:
        time.sleep(120)  # a stuck peer: alive, never answering
    # The failure left a collective pending (an FSDP prefetch, say): the stuck peer never completes it.
    pending = dist.all_reduce(torch.ones(4), async_op=True)
    started = time.monotonic()
    Runtime(rank=0, local_rank=0, world_size=2, device=torch.device("cpu")).close(failed=True)
    print(f"closed in {time.monotonic() - started:.1f} s", flush=True)
    leave(1)
"""


def test_a_failed_rank_leaves_without_waiting_on_collectives_a_stuck_peer_never_completes(tmp_path):
    code = textwrap.dedent(FAILED_RANK)
    store = str(tmp_path / "store")
    stuck = subprocess.Popen([sys.executable, "-c", code, "1", store], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", code, "0", store], capture_output=True, text=True, cwd=REPO,
                              timeout=60)  # fmt: skip
        assert time.monotonic() - started < 30
    finally:
        stuck.kill()
        stuck.wait()
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("closed in ")
