"""A real Slurm on this machine for the Slurm backend's tests and `make slurm-demo`.

Debian's slurm-wlm and munge (installed with apt-get when missing, as root), one slurmctld in the root network
namespace and one slurmd per compute node, each in a network namespace of its own with its own hostname, so
that srun and torchrun's c10d rendezvous cross a real network stack. Only loopback and the private /24 below
are ever addressed. Everything it starts is stopped by its saved pid, and everything it changes on the machine
(links, namespaces, /etc/hosts lines) is undone by `stop()`, even after a failed start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "f15"  # of every link and namespace this fixture makes, so a leftover of a crashed run is recognised
SUBNET = "10.233.15"  # a private /24 only these tests use
BRIDGE = f"{PREFIX}br0"
CONTROLLER_ADDRESS = f"{SUBNET}.1"
CTLD_PORT = 16817
SLURMD_PORT = 16818
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# flf2v-slurm-test"
LOCK_FILE = Path("/run/flf2v-slurm-test.lock")  # one test cluster on a machine at a time (fixed names)
PARTITION = "flf2v"
APT_PACKAGES = ("slurm-wlm", "munge")


def unavailable() -> str | None:
    """Why this machine cannot run the test cluster (one line), or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a real Slurm needs root (slurmd, network namespaces, apt-get); not root here"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"a real Slurm needs `{tool}` (iproute2/util-linux), which is not installed"
    if all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged")):
        return None
    if shutil.which("apt-get") is None:
        return "slurm-wlm and munge are not installed and there is no apt-get to install them"
    return None


def install() -> None:
    """apt-get install slurm-wlm munge, refreshing the package lists once if the first try fails."""
    if all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", *APT_PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@dataclass
class Node:
    name: str
    address: str
    netns: str
    host_link: str
    ns_link: str


@dataclass
class SlurmCluster:
    """`with SlurmCluster(scratch, nodes=2) as cluster:` a running cluster; `cluster.env` runs its commands."""

    scratch: Path
    nodes: int = 2
    cpus_per_node: int = 2
    members: list[Node] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _slurmds: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _munged: subprocess.Popen[bytes] | None = None
    _lock: int | None = None
    _netns_mounted_before: bool = False

    # ---- paths and environment ---------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.scratch / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment that points sbatch, squeue, sacct and scancel at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.members]

    def command(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, check=check, timeout=timeout)

    # ---- start and stop ----------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        why = unavailable()
        if why:
            raise RuntimeError(why)
        install()
        self._take_lock()
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._clear_leftovers()
        self._netns_mounted_before = _is_mount(Path("/run/netns"))
        self.members = [
            Node(f"flf2v-n{i}", f"{SUBNET}.{10 + i}", f"{PREFIX}n{i}", f"{PREFIX}h{i}", f"{PREFIX}c{i}")
            for i in range(1, self.nodes + 1)
        ]
        self._network()
        self._hosts_lines()
        self._start_munge()
        self._write_conf()
        ctld = ["slurmctld", "-D", "-c", "-i", "-f", str(self.conf)]
        self._spawn(ctld, self.scratch / "slurmctld.out")
        for node in self.members:
            self._slurmds[node.name] = self._start_slurmd(node)
        self._wait_idle(timeout=40)

    def _start_slurmd(self, node: Node) -> subprocess.Popen[bytes]:
        # nsenter, not `ip netns exec`, which remounts /sys and hides the cgroup tree slurmd looks at; the UTS
        # namespace gives the node its own hostname, which torch's rendezvous resolves to its address.
        inner = f"hostname {node.name} && exec slurmd -D -N {node.name} -f {self.conf}"
        argv = ["nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--uts", "--", "sh", "-c", inner]
        self._spawn(argv, self.scratch / f"slurmd-{node.name}.out")
        return self._procs[-1]

    def lose_node(self, name: str) -> None:
        """The node hangs: kill -9 its slurmd, and stop (SIGSTOP) everything else on it, so that nothing there
        answers or gets on. The controller finds the node lost after SlurmdTimeout; its peers would only
        notice at their collective timeout."""
        proc = self._slurmds[name]
        proc.kill()
        proc.wait(timeout=10)
        for pid in self.node_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def revive(self, name: str) -> None:
        """The node reboots: what ran there is gone, its slurmd starts again and the node returns to service
        (for the tests after a lost node)."""
        _kill_all(list(self.node_pids(name)))
        self._procs.remove(self._slurmds[name])
        self._slurmds[name] = self._start_slurmd(self.member(name))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.command("scontrol", "update", f"nodename={name}", "state=resume", check=False)
            state = self.command("sinfo", "-h", "-n", name, "-o", "%t", check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not come back to service")

    def stop(self) -> None:
        """Cancel every job (slurmstepd outlives slurmd), stop the daemons by their pids, undo the network
        and the /etc/hosts lines. Safe to call after a start that failed half-way, and twice."""
        if self.conf.exists() and any(p.poll() is None for p in self._procs):
            with contextlib.suppress(Exception):
                self.command("scancel", "--partition", PARTITION, check=False, timeout=10)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self.command("squeue", "-h", check=False, timeout=10).stdout:
                    time.sleep(0.2)
        for proc in reversed(self._procs):
            _end(proc)
        self._procs.clear()
        if self._munged is not None:
            _end(self._munged)
            self._munged = None
        # A slurmstepd whose slurmd was killed (a lost-node test) never hears the cancel: whatever still runs
        # in a node's namespace is ours, and goes before the namespace does.
        for node in self.members:
            _kill_all(list(self.node_pids(node.name)) if Path(f"/run/netns/{node.netns}").exists() else [])
        self._remove_network()
        self._remove_hosts_lines()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # ---- pieces ------------------------------------------------------------------------------------------
    def _take_lock(self) -> None:
        fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for another test cluster on this machine to be torn down
        self._lock = fd

    def _clear_leftovers(self) -> None:
        """A run killed before its teardown leaves links and namespaces of ours: remove them first."""
        for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(PREFIX):
                _run("ip", "link", "del", name, check=False)
        for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(PREFIX):
                _run("ip", "netns", "del", name, check=False)
        self._remove_hosts_lines()

    def _network(self) -> None:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{CONTROLLER_ADDRESS}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for node in self.members:
            _run("ip", "netns", "add", node.netns)
            _run("ip", "link", "add", node.host_link, "type", "veth", "peer", "name", node.ns_link)
            _run("ip", "link", "set", node.host_link, "master", BRIDGE)
            _run("ip", "link", "set", node.host_link, "up")
            _run("ip", "link", "set", node.ns_link, "netns", node.netns)
            inside = ("ip", "netns", "exec", node.netns)
            _run(*inside, "ip", "addr", "add", f"{node.address}/24", "dev", node.ns_link)
            _run(*inside, "ip", "link", "set", node.ns_link, "up")
            _run(*inside, "ip", "link", "set", "lo", "up")

    def _remove_network(self) -> None:
        for node in self.members:
            _run("ip", "link", "del", node.host_link, check=False)
            _run("ip", "netns", "del", node.netns, check=False)
        _run("ip", "link", "del", BRIDGE, check=False)
        if not self._netns_mounted_before and _is_mount(Path("/run/netns")):
            _run("umount", "/run/netns", check=False)  # `ip netns add` leaves its bind mount behind

    def _hosts_lines(self) -> None:
        lines = [f"{CONTROLLER_ADDRESS} {socket.gethostname()}-ctl {HOSTS_MARK}"]
        lines += [f"{n.address} {n.name} {HOSTS_MARK}" for n in self.members]
        text = HOSTS_FILE.read_text()
        HOSTS_FILE.write_text(text + ("" if text.endswith("\n") else "\n") + "\n".join(lines) + "\n")

    def _remove_hosts_lines(self) -> None:
        with contextlib.suppress(OSError):
            text = HOSTS_FILE.read_text()
            if HOSTS_MARK in text:
                kept = [line for line in text.splitlines(keepends=True) if HOSTS_MARK not in line]
                HOSTS_FILE.write_text("".join(kept))

    def _start_munge(self) -> None:
        if _munge_works():
            return  # a munged of the machine's own already answers
        run_dir = Path("/run/munge")
        run_dir.mkdir(exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        with open(self.scratch / "munged.out", "ab") as out:
            self._munged = subprocess.Popen(
                ["munged", "--foreground", "--force"], user="munge", group="munge", stdout=out, stderr=out
            )
        deadline = time.monotonic() + 10
        while not _munge_works():
            if time.monotonic() > deadline or self._munged.poll() is not None:
                raise RuntimeError(f"munged did not start; see {self.scratch / 'munged.out'}")
            time.sleep(0.1)

    def _write_conf(self) -> None:
        s = self.scratch
        for folder in ("state", "spool"):
            (s / folder).mkdir(exist_ok=True)
        nodes = "\n".join(
            f"NodeName={n.name} NodeAddr={n.address} CPUs={self.cpus_per_node} RealMemory=1000 State=UNKNOWN"
            for n in self.members
        )
        self.conf.write_text(
            f"""ClusterName=flf2vtest
SlurmctldHost={socket.gethostname().split(".")[0]}({CONTROLLER_ADDRESS})
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool/%n
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd-%n.pid
SlurmctldLogFile={s}/slurmctld.log
SlurmdLogFile={s}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/filetxt
JobCompLoc={s}/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MinJobAge=600
KillWait=2
SlurmdTimeout=10
ReturnToService=2
MpiDefault=none
SlurmdParameters=config_overrides
{nodes}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _spawn(self, argv: list[str], out_path: Path) -> None:
        with open(out_path, "ab") as out:
            proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        self._procs.append(proc)

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states = ""
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a Slurm daemon exited at start ({proc.args}); see {self.scratch}")
            done = self.command("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=10)
            states = done.stdout.strip()
            idle = [line for line in states.splitlines() if line.split()[-1:] == ["idle"]]
            if len(idle) == len(self.members):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Slurm nodes did not become idle within {timeout:g} s: {states!r}")

    # ---- for the tests -----------------------------------------------------------------------------------
    def wait_job(self, job_id: str, timeout: float = 60) -> str:
        """The job's final state (COMPLETED, FAILED, ...), waiting for it to end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.command("sacct", "-c", "-j", job_id, "-n", "-P", "--format=State", check=False).stdout
            if out.strip():
                return out.split()[0]
            time.sleep(0.2)
        raise TimeoutError(f"Slurm job {job_id} did not end within {timeout:g} s")

    def node_pids(self, node: str) -> Iterator[int]:
        """Pids of processes running in this node's network namespace."""
        ns_inode = os.stat(f"/run/netns/{self.member(node).netns}").st_ino
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(entry / "ns" / "net").st_ino == ns_inode:
                        yield int(entry.name)

    def member(self, name: str) -> Node:
        return next(n for n in self.members if n.name == name)


def _munge_works() -> bool:
    if shutil.which("munge") is None:
        return False
    cred = subprocess.run(["munge", "-n"], capture_output=True)
    if cred.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0


def _is_mount(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())
    return False


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie of a dead parent is reaped late here, but holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _end(proc: subprocess.Popen[bytes]) -> None:
    """TERM, a moment, then KILL; always reaped (processes here are not reaped on their own)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
