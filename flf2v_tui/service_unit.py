"""The worker as a systemd user service (`flf2v service`), the way pueue ships pueued.service.

A user unit runs under the user's own systemd instance: no root needed, started at login and stopped at logout,
unless the user has lingering enabled (`loginctl enable-linger USER`), which starts it at boot and keeps it
running without a session, what a render box wants.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

UNIT_NAME = "flf2v-worker.service"
LINGER_ADVICE = (
    "a user service runs only while you are logged in; to start it at boot and keep it running after you log "
    "out, enable lingering once: loginctl enable-linger {user}"
)


def unit_dir() -> Path:
    """Where systemd looks for the user's own units ($XDG_CONFIG_HOME/systemd/user)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def _quote(word: str, command: bool = False) -> str:
    """One word of an ExecStart= (`command`) or Environment= line, quoted as systemd reads them. `%` starts a
    specifier in both, written `%%` to mean itself; in a command line `$` starts a variable (`$FOO`, `${FOO}`),
    written `$$` to mean itself (Environment= expands no variable, so its `$` stays)."""
    word = word.replace("%", "%%")
    if command:
        word = word.replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(home: Path, worker_args: Sequence[str] = (), python: str | None = None) -> str:
    """The unit file: `flf2v worker` with `worker_args`, run by this Python (so the installed flf2v, its
    virtual environment included), on the queue in `home`."""
    command = [python or sys.executable, "-m", "flf2v_tui.cli", "worker", *worker_args]
    return "\n".join([
        "# Written by `flf2v service install`; `flf2v service uninstall` removes it.",
        "[Unit]",
        "Description=flf2v worker: runs the queued Wan2.1 first-last-frame-to-video renders",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"Environment={_quote(f'FLF2V_HOME={home}')} PYTHONUNBUFFERED=1",
        f"ExecStart={' '.join(_quote(word, command=True) for word in command)}",
        # SIGTERM to the worker alone: its renders keep running and the next worker re-attaches them (a
        # restart or an upgrade loses no work). `flf2v cancel` stops renders, not the service.
        "KillMode=process",
        "Restart=on-failure",
        "RestartSec=10",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])  # fmt: skip


def systemd_missing() -> str | None:
    """Why the user's systemd cannot run the unit here, or None when it can."""
    if shutil.which("systemctl") is None:
        return "systemd is not installed here (no systemctl)"
    if not Path("/run/systemd/system").is_dir():  # systemd's own test of whether it booted the machine
        return "systemd is not running on this machine (no /run/systemd/system; a container, or another init)"
    return None


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    """`systemctl --user ARGS`, its output captured."""
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True, timeout=60, check=False)


def lingering(user: str) -> bool | None:
    """Whether `user` lingers (their services run without a session); None if loginctl cannot say."""
    if shutil.which("loginctl") is None:
        return None
    proc = subprocess.run(
        ["loginctl", "show-user", user, "--property=Linger", "--value"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    answer = proc.stdout.strip()
    return None if proc.returncode or answer not in ("yes", "no") else answer == "yes"
