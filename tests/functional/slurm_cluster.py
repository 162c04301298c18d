"""A real Slurm on this machine for the Slurm backend's tests and `make slurm-demo`.

Debian's slurm-wlm and munge (installed with apt-get when missing, as root), one slurmctld in the root network
namespace and one slurmd per compute node, each in a network namespace of its own with its own hostname, so
that srun and torchrun's c10d rendezvous cross a real network stack. Only loopback and the private /24 below
are ever addressed. Everything it starts is stopped by its saved pid, and everything it changes on the machine
(links, namespaces, /etc/hosts lines) is undone by `stop()`, even after a failed start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.functional.slurm_machine import (
    PREFIX,
    add_hosts_lines,
    end,
    is_mount,
    kill_all,
    kill_saved_daemons,
    release_lock,
    remove_our_links_and_namespaces,
    restore_hosts,
    run,
    save_pid,
    take_lock,
)

SUBNET = "10.233.15"  # a private /24 only these tests use
BRIDGE = f"{PREFIX}br0"
CONTROLLER_ADDRESS = f"{SUBNET}.1"
CTLD_PORT = 16817
SLURMD_PORT = 16818
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
        for argv in (["apt-get", "update", "-qq"], cmd):
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                raise RuntimeError(f"`{' '.join(argv)}` failed: {said}")


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
    _hosts_before: bytes | None = None

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
        self._lock = take_lock()
        self.scratch.mkdir(parents=True, exist_ok=True)
        # What a run killed before its teardown left: its daemons (slurmctld would hold the port), links,
        # namespaces and /etc/hosts lines.
        kill_saved_daemons()
        remove_our_links_and_namespaces()
        restore_hosts(None)
        self._netns_mounted_before = is_mount(Path("/run/netns"))
        self.members = [
            Node(f"flf2v-n{i}", f"{SUBNET}.{10 + i}", f"{PREFIX}n{i}", f"{PREFIX}h{i}", f"{PREFIX}c{i}")
            for i in range(1, self.nodes + 1)
        ]
        self._network()
        names = [f"{CONTROLLER_ADDRESS} {socket.gethostname()}-ctl", *(f"{n.address} {n.name}" for n in self.members)]
        self._hosts_before = add_hosts_lines(names)
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
        kill_all(list(self.node_pids(name)))
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
        and the /etc/hosts lines, release the lock: each step runs whatever the others raised. Safe to call
        after a start that failed half-way, and twice."""
        with contextlib.ExitStack() as steps:  # callbacks run last-in first-out: the lock goes last
            steps.callback(self._release)
            steps.callback(self._restore_hosts)
            steps.callback(self._remove_network)
            steps.callback(self._kill_in_namespaces)
            steps.callback(self._end_daemons)
            steps.callback(self._cancel_jobs)

    def _cancel_jobs(self) -> None:
        if self.conf.exists() and any(p.poll() is None for p in self._procs):
            with contextlib.suppress(Exception):
                self.command("scancel", "--partition", PARTITION, check=False, timeout=10)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self.command("squeue", "-h", check=False, timeout=10).stdout:
                    time.sleep(0.2)

    def _end_daemons(self) -> None:
        with contextlib.ExitStack() as each:  # last in, first ended: slurmd, then slurmctld, then munged
            each.callback(kill_saved_daemons)  # and the pids file goes
            for proc in [*([self._munged] if self._munged else []), *self._procs]:
                each.callback(end, proc)
            self._procs.clear()
            self._munged = None

    def _kill_in_namespaces(self) -> None:
        # A slurmstepd whose slurmd was killed (a lost-node test) never hears the cancel: whatever still runs
        # in a node's namespace is ours, and goes before the namespace does.
        for node in self.members:
            kill_all(list(self.node_pids(node.name)) if Path(f"/run/netns/{node.netns}").exists() else [])

    def _restore_hosts(self) -> None:
        if self._hosts_before is not None:
            restore_hosts(self._hosts_before)
            self._hosts_before = None

    def _release(self) -> None:
        release_lock(self._lock)
        self._lock = None

    # ---- pieces ------------------------------------------------------------------------------------------
    def _network(self) -> None:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{CONTROLLER_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        for node in self.members:
            run("ip", "netns", "add", node.netns)
            run("ip", "link", "add", node.host_link, "type", "veth", "peer", "name", node.ns_link)
            run("ip", "link", "set", node.host_link, "master", BRIDGE)
            run("ip", "link", "set", node.host_link, "up")
            run("ip", "link", "set", node.ns_link, "netns", node.netns)
            inside = ("ip", "netns", "exec", node.netns)
            run(*inside, "ip", "addr", "add", f"{node.address}/24", "dev", node.ns_link)
            run(*inside, "ip", "link", "set", node.ns_link, "up")
            run(*inside, "ip", "link", "set", "lo", "up")

    def _remove_network(self) -> None:
        for node in self.members:
            run("ip", "link", "del", node.host_link, check=False)
            run("ip", "netns", "del", node.netns, check=False)
        run("ip", "link", "del", BRIDGE, check=False)
        if not self._netns_mounted_before and is_mount(Path("/run/netns")):
            run("umount", "/run/netns", check=False)  # `ip netns add` leaves its bind mount behind

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
        save_pid(self._munged.pid)
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
        save_pid(proc.pid)

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
