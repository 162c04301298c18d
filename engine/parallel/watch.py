"""Turn a lost peer or a hung collective into an `error` event of class `comm`, never a silent hang.

Each rank runs a daemon thread that
- polls the processes of the peers on its own host (pid and start time, exchanged right after the process
  group starts): when one is gone, it writes the `comm` error event naming the peer at once (on NCCL the
  communicator's own error handling may abort the process a moment later, before the main thread could
  write anything), then interrupts the main thread, which unwinds through the normal error path (its own
  report of the same failure is dropped: one error event per rank); if the main thread is stuck inside a
  collective and cannot unwind within `grace_s`, the thread ends the process;
- times the regions that wait on other ranks (the exchange of process ids, the creation of the device
  mesh and process groups, barriers, broadcasts, the sharded T5's encoding and each whole denoising step of
  a sharded or sequence-parallel DiT, up to and including the CUDA sync, so FLF2V_DIST_TIMEOUT bounds one
  such step too): one that lasts longer than the timeout is reported as hung and the process ends. On gloo
  the collective itself times out at the same limit and raises in the main thread; whichever comes first,
  one comm event is written. On NCCL, whose own watchdog would abort the process without a word, the
  process group gets a longer timeout, so this report comes first.

Peers on other hosts are left to the collectives' timeouts: their processes cannot be polled from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import torch.distributed as dist

from engine.errors import EXIT_FAILURE, PeerLostError
from engine.failures import leave, set_peer_probe
from engine.runtime import COLLECTIVE_TIMEOUT_HINT, Runtime

log = logging.getLogger("flf2v.engine")


class CollectiveTimeout(RuntimeError):
    """No answer from the other ranks within the timeout."""

    failure_class = "comm"


@dataclass(frozen=True)
class Region:
    """A timed region: what it waits for, since when, for how long at most, and the setting that raises that."""

    what: str
    started: float
    limit_s: float
    knob: str


@dataclass(frozen=True)
class Peer:
    rank: int
    host: str
    pid: int
    started: float


def me(rank: int) -> Peer:
    return Peer(rank, socket.gethostname(), os.getpid(), psutil.Process().create_time())


def exchange_peers(rank: int, world_size: int) -> list[Peer]:
    """Every rank's Peer, in rank order (a collective: all ranks call it)."""
    box: list[Peer | None] = [None] * world_size
    dist.all_gather_object(box, me(rank))
    return [p for p in box if p is not None]


def is_gone(peer: Peer) -> bool:
    try:
        proc = psutil.Process(peer.pid)
        return abs(proc.create_time() - peer.started) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


class PeerWatch:
    """`report(exc)` writes this rank's error event; it may be called more than once for one failure (the
    Reporter keeps the first)."""

    def __init__(
        self,
        rank: int,
        peers: list[Peer],
        report: Callable[[BaseException], None],
        timeout_s: float,
        interval_s: float = 0.2,
        grace_s: float = 10.0,
    ) -> None:
        self.rank = rank
        self.set_peers(peers)
        self.report = report
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._lost: PeerLostError | None = None
        self._lost_at = 0.0
        self._region: Region | None = None
        self._unwinding = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flf2v-peer-watch", daemon=True)

    def set_peers(self, peers: list[Peer]) -> None:
        """The peers to poll from now on (the list is replaced whole, so the thread sees old or new)."""
        host = socket.gethostname()
        self.local_peers = [p for p in peers if p.rank != self.rank and p.host == host]

    def start(self) -> PeerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * self.interval_s + 1)

    def unwinding(self) -> None:
        """The main thread is handling the error that ends the run: interrupting it now would only cut its
        report short. A loss still ends the process `grace_s` after it was found, should the main thread hang."""
        self._unwinding = True

    def lost_peer(self, wait_s: float = 0.0) -> PeerLostError | None:
        """The peer found gone, checking again now if none was yet, for up to `wait_s` seconds: a collective
        can fail on a dead peer's closed sockets a moment before its process is seen gone."""
        deadline = time.monotonic() + (wait_s if self.local_peers else 0.0)
        while self._lost is None and not self._stop.is_set():
            self._note(self._find_lost())
            if self._lost is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return self._lost

    def _note(self, lost: PeerLostError | None) -> None:
        """Keep the first loss found, by this thread or the main one, and when: the grace counts from then."""
        if lost is not None and self._lost is None:
            self._lost_at = time.monotonic()
            self._lost = lost

    def _find_lost(self) -> PeerLostError | None:
        for peer in self.local_peers:
            if is_gone(peer):
                return PeerLostError(
                    f"rank {peer.rank} (pid {peer.pid} on {peer.host}) is gone: it exited or was killed while "
                    f"rank {self.rank} still needed it, so the job cannot go on (rank{peer.rank}.log tells why)"
                )
        return None

    @contextlib.contextmanager
    def waiting(self, what: str, limit_s: float | None = None, knob: str = COLLECTIVE_TIMEOUT_HINT) -> Iterator[None]:
        """A region that waits on the other ranks, for up to `limit_s` (default: the collective timeout) before
        it counts as hung; `knob` is the setting that raises the limit. Nested regions count as the outermost."""
        outer = self._region
        if outer is None:
            self._region = Region(what, time.monotonic(), limit_s or self.timeout_s, knob)
        try:
            yield
        finally:
            if outer is None:
                self._region = None

    def _fatal(self, exc: BaseException) -> None:
        try:
            self.report(exc)
        finally:
            leave(EXIT_FAILURE)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            if self._lost is None:
                self._note(self._find_lost())
                if self._lost is not None and not self._unwinding:
                    try:
                        self.report(self._lost)
                    except Exception:  # the main thread must still be told
                        log.exception(f"Could not report the loss: {self._lost}")
                    # A real signal, so that a sleeping main thread wakes up too; its SIGTERM handler raises the
                    # loss there (see failures.set_peer_probe).
                    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
            elif now - self._lost_at > self.grace_s:
                self._fatal(self._lost)
            region = self._region
            if region is not None and now - region.started > region.limit_s:
                self._fatal(
                    CollectiveTimeout(
                        f"rank {self.rank} waited {now - region.started:.0f} s in {region.what} for the other ranks: "
                        "a collective is hung (a peer is stuck or the network is down). If this much time is really "
                        f"needed, raise {region.knob}"
                    )
                )


def start_peer_watch(runtime: Runtime, report: Callable[[BaseException], None]) -> PeerWatch | None:
    """Start watching this rank's peers (a collective: every rank calls it); None on a single process."""
    if not runtime.distributed:
        return None
    # Started before the exchange, with no peers yet to poll, so that the exchange itself is timed.
    watch = PeerWatch(runtime.rank, [], report, runtime.timeout_s).start()
    runtime.watch = watch
    with watch.waiting("exchanging process ids with the other ranks"):
        peers = exchange_peers(runtime.rank, runtime.world_size)
    watch.set_peers(peers)
    set_peer_probe(watch.lost_peer)
    return watch
