"""What the test cluster changes on the machine is undone exactly: /etc/hosts byte for byte, and the machine-wide
lock gives up with one line rather than waiting for ever (on files of the test's own, not the machine's)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.functional import slurm_machine


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    monkeypatch.setattr(slurm_machine, "HOSTS_FILE", path)
    return path


def test_hosts_lines_are_added_in_place_and_restored_byte_for_byte(hosts):
    original = b"127.0.0.1 localhost\n::1 ip6-localhost  # no newline at the end"
    hosts.write_bytes(original)
    inode = os.stat(hosts).st_ino
    before = slurm_machine.add_hosts_lines(["10.233.15.11 flf2v-n1", "10.233.15.12 flf2v-n2"])
    text = hosts.read_text()
    assert text.startswith(original.decode() + "\n") and "10.233.15.12 flf2v-n2 # flf2v-slurm-test\n" in text
    assert os.stat(hosts).st_ino == inode  # in place: /etc/hosts may be a bind mount
    slurm_machine.restore_hosts(before)
    assert hosts.read_bytes() == original and os.stat(hosts).st_ino == inode


def test_hosts_edited_meanwhile_keep_the_edit_and_lose_only_our_lines(hosts):
    hosts.write_bytes(b"127.0.0.1 localhost\n")
    before = slurm_machine.add_hosts_lines(["10.233.15.11 flf2v-n1"])
    hosts.write_bytes(b"127.0.0.2 edited\n" + hosts.read_bytes())
    slurm_machine.restore_hosts(before)
    assert hosts.read_bytes() == b"127.0.0.2 edited\n127.0.0.1 localhost\n"
    slurm_machine.restore_hosts(None)  # after a crash, nothing of ours left: nothing changes
    assert hosts.read_bytes() == b"127.0.0.2 edited\n127.0.0.1 localhost\n"


def test_the_lock_held_elsewhere_gives_up_with_one_line(tmp_path, monkeypatch):
    lock = tmp_path / "cluster.lock"
    monkeypatch.setattr(slurm_machine, "LOCK_FILE", lock)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'4242')\nprint('held', flush=True)\ntime.sleep(60)\n",
         str(lock)], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=r"^another Slurm test cluster \(pid 4242\) has held .* for 1 s"):
            slurm_machine.take_lock(timeout=1)
    finally:
        holder.kill()
        holder.wait()
    fd = slurm_machine.take_lock(timeout=1)  # free again
    assert lock.read_text().strip() == str(os.getpid())
    slurm_machine.release_lock(fd)


def test_daemons_left_by_a_killed_run_are_killed_by_their_saved_pids(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_machine, "PIDS_FILE", tmp_path / "pids")
    left = subprocess.Popen(["sleep", "60"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        slurm_machine.save_pid(left.pid)
        # A saved pid whose process started at another time is a reused pid: not ours, left alone.
        with open(tmp_path / "pids", "a") as fh:
            fh.write(f"{other.pid} 1\n")
        slurm_machine.kill_saved_daemons()
        assert left.wait(timeout=10) == -9 and other.poll() is None
        assert not (tmp_path / "pids").exists()
    finally:
        for proc in (left, other):
            proc.kill()
            proc.wait()
