"""The TUI's log reading without the app: the byte-offset line index, the tail shown while it is built, and
the all-ranks merge."""

from __future__ import annotations

import random
import threading

import pytest

from flf2v_tui.logs import Follower
from flf2v_tui.screen_data import lineindex
from flf2v_tui.screen_data.lineindex import FileLines, LineIndex
from flf2v_tui.screen_data.merged import MergedLines, tail_offset


def _write(path, lines, end="\n"):
    path.write_text("\n".join(lines) + end)


@pytest.fixture
def numbered(tmp_path):
    rng = random.Random(7)
    lines = [f"line {i} " + "y" * rng.randint(0, 300) for i in range(5000)]
    path = tmp_path / "rank0.log"
    _write(path, [*lines, "unfinished"], end="")
    return path, [*lines, "unfinished"]


def test_any_range_of_lines_reads_back_exactly(numbered):
    path, lines = numbered
    index = LineIndex(path)
    assert index.update()
    assert index.line_count == len(lines)
    for first in (0, 1, 63, 64, 65, 127, 128, 2500, 4990, 5000):
        assert index.lines(first, first + 17) == lines[first : first + 17]
    for line in (0, 64, 777, 5000):
        assert index.line_at(index.offset_of(line)) == line


def test_growth_is_indexed_incrementally_and_a_replaced_file_from_scratch(numbered):
    path, lines = numbered
    source = FileLines(path)
    source.refresh()
    source.load(4990, 5010)
    assert source.cached(5000) == "unfinished"
    with open(path, "a") as fh:
        fh.write(" now finished\nand one more\n")
    assert source.refresh() and source.count == len(lines) + 1
    source.load(4999, 5010)
    assert [source.cached(5000), source.cached(5001)] == ["unfinished now finished", "and one more"]
    assert not source.refresh()  # nothing new
    path.unlink()
    _write(path, ["fresh", "file"])
    assert source.refresh() and source.count == 2
    source.load(0, 5)
    assert source.cached(1) == "file"


def test_scanning_in_small_budgets_gives_the_same_index(numbered, monkeypatch):
    path, lines = numbered
    monkeypatch.setattr(lineindex, "SCAN_CHUNK", 4096)
    index = LineIndex(path)
    while index.update(budget=10_000):
        pass
    assert index.line_count == len(lines)
    assert index.lines(4000, 4003) == lines[4000:4003]


def test_search_both_ways_ignores_case_and_crosses_chunks(numbered, monkeypatch):
    path, _ = numbered
    monkeypatch.setattr(lineindex, "SEARCH_CHUNK", 1000)
    index = LineIndex(path)
    index.update()
    assert index.search("LINE 2500 ", 0) == 2500
    assert index.search("line 2500 ", 2500) is None
    assert index.search("line 10 ", 4000, backwards=True) == 10
    assert index.search("unfinished", 0) == 5000
    assert index.search("absent", 0) is None and index.search("", 0) is None


def test_a_huge_log_opens_at_its_tail_before_the_index_is_built(numbered):
    path, lines = numbered
    source = FileLines(path)
    source.prime(tail_bytes=2000)
    assert source.provisional and source.count > 0
    assert source.cached(source.count - 1) == "unfinished"
    assert source.cached(0) in {x for x in lines}  # whole lines only, the first one cut mid-way is dropped
    source.refresh()
    assert not source.provisional and source.count == len(lines)


def test_missing_and_empty_files(tmp_path):
    missing = FileLines(tmp_path / "rank3.log")
    missing.refresh()
    assert missing.count == 0 and missing.complete and not missing.refresh()
    (tmp_path / "empty.log").write_text("")
    empty = FileLines(tmp_path / "empty.log")
    empty.refresh()
    empty.load(0, 10)
    assert empty.count == 0 and empty.cached(0) is None


def _stamped(second: int, text: str) -> str:
    return f"[2026-01-01 00:00:{second:02d},000] INFO: {text}\n"


def test_all_ranks_merge_by_time_even_when_a_rank_flushes_late(tmp_path):
    r0, r1 = tmp_path / "rank0.log", tmp_path / "rank1.log"
    r0.write_text(_stamped(1, "a") + _stamped(3, "c") + "Traceback (most recent call last):\n")
    r1.write_text(_stamped(2, "b"))
    merged = MergedLines({0: r0, 1: r1, 2: tmp_path / "rank2.log"})
    assert merged.refresh()
    with open(r1, "a") as fh:
        fh.write(_stamped(2, "b, flushed late") + _stamped(4, "d"))
    assert merged.refresh()
    texts = [line[:5] + line[5:].split("INFO: ")[-1] for line in merged.lines]
    assert texts == ["[r0] a", "[r1] b", "[r1] b, flushed late", "[r0] c", "[r0] Traceback (most recent call last):",
                     "[r1] d"]  # fmt: skip
    assert merged.search("FLUSHED", 0) == 2 and merged.search("a", 5, backwards=True) == 4


def test_all_ranks_view_starts_near_the_end_of_big_logs_and_stays_bounded(tmp_path):
    path = tmp_path / "rank0.log"
    path.write_text("".join(_stamped(i % 60, f"n{i}") for i in range(1000)))
    start = tail_offset(path, 500)
    assert path.read_bytes()[start - 1 : start] == b"\n"
    merged = MergedLines({0: path}, tail_bytes=500, max_lines=100)
    merged.refresh()
    assert merged.truncated and 0 < merged.count < 20 and merged.lines[-1].endswith("n999")
    with open(path, "a") as fh:
        fh.write("".join(_stamped(59, f"m{i}") for i in range(200)))
    merged.refresh()
    assert merged.count <= 100 and merged.dropped > 0 and merged.lines[-1].endswith("m199")


def test_a_log_that_vanishes_or_cannot_be_read_gives_nothing_and_says_why(numbered):
    path, lines = numbered
    source = FileLines(path)
    source.refresh()
    source.load(0, 10)
    assert source.cached(3) == lines[3] and source.problem is None
    path.unlink()  # its attempt folder removed while shown
    index = source.index
    assert index.lines(0, 10) == [] and index.search("line", 0) is None and index.search("line", 9, True) is None
    assert index.offset_of(5) == 0 and index.line_at(100) == 0
    assert source.problem == "the log is gone" and source.count == 0
    assert source.refresh() is False and source.cached(3) is None  # no view asks for lines of a lost file
    path.mkdir()  # in its place, something that cannot be read as a file
    assert source.refresh() and "cannot be read" in str(source.problem) and source.count == 0
    path.rmdir()
    _write(path, ["back", "again"])
    assert source.refresh() and source.problem is None and source.count == 2


def test_a_log_not_written_yet_is_not_lost(tmp_path):
    source = FileLines(tmp_path / "rank1.log")
    source.prime()
    source.refresh()
    assert source.problem is None and source.complete and not source.refresh()


def test_the_merged_view_keeps_its_lines_and_says_when_logs_go(tmp_path):
    r0, r1, r2 = tmp_path / "rank0.log", tmp_path / "rank1.log", tmp_path / "rank2.log"
    r0.write_text(_stamped(1, "a"))
    r1.write_text(_stamped(2, "b"))
    merged = MergedLines({0: r0, 1: r1, 2: r2})
    assert merged.refresh() and merged.problem is None  # rank 2 has written nothing yet: not a loss
    r1.unlink()
    assert merged.refresh() and merged.problem == "rank 1: the log is gone"
    r2.write_text(_stamped(3, "c"))
    assert merged.refresh() and merged.problem == "rank 1: the log is gone"
    r0.unlink()
    r2.unlink()
    assert merged.refresh() and merged.problem.startswith("the log is gone (every rank's")
    assert merged.count == 3 and not merged.refresh()


def test_a_character_split_between_two_appends_is_read_whole(tmp_path):
    """The official negative prompt is Chinese and is logged: a rank's write can end inside a character."""
    path = tmp_path / "rank0.log"
    line = _stamped(1, "负面提示 色调艳丽")
    raw = line.encode()
    cut = raw.index("面".encode()) + 1  # inside the second character's three bytes
    path.write_bytes(raw[:cut])
    follower, merged = Follower({0: path}, prefix=False), MergedLines({0: path})
    assert follower.poll() == [] and not merged.refresh()
    with open(path, "ab") as fh:
        fh.write(raw[cut:])
    assert follower.poll() == [line]
    assert merged.refresh() and merged.lines == ["[r0] " + line.rstrip("\n")]
    path.write_bytes(raw + "面".encode()[:2])  # a character cut short for good: the rank was killed
    cut_short = Follower({0: path}, prefix=False)
    assert cut_short.poll() == [line] and cut_short.flush() == ["\ufffd\n"]


def _refresh_at_once(source, threads: int = 4) -> None:
    """Refresh from several threads released together, as a view's replaced tail thread and its successor do."""
    start = threading.Barrier(threads)

    def refresh() -> None:
        start.wait()
        source.refresh()

    workers = [threading.Thread(target=refresh) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_refreshes_from_two_threads_at_once_take_each_line_once(tmp_path):
    """Without one refresh at a time, most of these rounds counted lines twice (the flaky merged-view test)."""
    ranks = {r: tmp_path / f"rank{r}.log" for r in range(2)}
    for rank, path in ranks.items():
        path.write_text("".join(_stamped(i, f"r{rank} n{i}") for i in range(13)))
    big = tmp_path / "big.log"
    big.write_text("".join(_stamped(i % 60, f"n{i}") for i in range(5000)))
    for _ in range(50):
        merged, single = MergedLines(ranks), FileLines(big)
        _refresh_at_once(merged)
        _refresh_at_once(single)
        assert merged.count == 26 and len(set(merged.lines)) == 26
        assert single.count == 5000 and single.index.line_count == 5000


def test_a_two_node_attempt_has_a_log_per_global_rank(tmp_path):
    """nproc is per node: a 2-node × 1-rank attempt has rank0.log and rank1.log, and one that only rank 1
    wrote still opens on the ranks' logs, not torchrun's."""
    from flf2v_tui.tui.screens.job import attempt_ranks, first_log_tab

    (tmp_path / "rank1.log").write_text("node 2 says why\n")
    (tmp_path / "torchrun.log").write_text("torchrun's report\n")
    attempt, job = {"nproc": 1, "state": "failed", "log_dir": str(tmp_path)}, {"nodes": 2}
    assert attempt_ranks(attempt, job) == 2
    assert first_log_tab(attempt, job) == "log-all"
    assert first_log_tab(attempt, {"nodes": 1}) == "log-torchrun"
