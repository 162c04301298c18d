"""`flf2v service install|uninstall|status`: the worker as a systemd user service (flf2v_tui.service_unit)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from engine.errors import BadInputError
from flf2v_tui.commands.common import die, handles_errors
from flf2v_tui.service_unit import (
    LINGER_ADVICE,
    UNIT_NAME,
    lingering,
    systemctl,
    systemd_missing,
    unit_dir,
    unit_text,
)
from flf2v_tui.term import echo
from storage.paths import Home

service_app = typer.Typer(
    name="service",
    help="Run the worker as a systemd user service: started at login (or at boot, with lingering), restarted "
    "if it fails.",
    epilog="Example:\n\n  flf2v service install -- --gpus 0,1\n\n  flf2v service status",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
HELP_OPTIONS = ("-h", "--help")
# What a command that needs systemd says where there is none: exit 1, the machine's state and not bad input.
_NO_SYSTEMD = (
    "{why}; run `flf2v worker` under your own supervisor instead (`flf2v service install --print` shows the unit)"
)


def _require_systemd() -> None:
    why = systemd_missing()
    if why:
        die(_NO_SYSTEMD.format(why=why), 1)


def _run(*args: str) -> None:
    proc = systemctl(*args)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        die(f"systemctl --user {' '.join(args)} failed: {detail[-1] if detail else f'exit {proc.returncode}'}", 1)


def _check_worker_args(args: list[str]) -> None:
    """The worker's options parsed now, by `flf2v worker`'s own parser: a typo is refused here, not found
    in the journal after the service failed to start."""
    import typer.main

    from flf2v_tui.commands.system import worker as worker_command

    help_asked = [arg for arg in args if arg in HELP_OPTIONS]
    if help_asked:  # click would print the worker's help and exit 0, with no unit written or printed
        raise BadInputError(
            f"worker options after --: {help_asked[0]} is not a worker option to install; "
            "see flf2v worker --help for them"
        )
    alone = typer.Typer(add_completion=False, context_settings={"help_option_names": list(HELP_OPTIONS)})
    alone.command("worker")(worker_command)
    worker = typer.main.get_command(alone)  # a Typer of one command is that command
    try:
        worker.make_context("flf2v worker", list(args))
    except Exception as exc:  # click's usage errors, recognised by shape as in flf2v_tui.cli.main
        if not hasattr(exc, "format_message"):
            raise
        raise BadInputError(f"worker options after --: {exc.format_message()} (see flf2v worker --help)") from None


@handles_errors
def install(
    ctx: typer.Context,
    start: Annotated[bool, typer.Option("--start/--no-start", help="enable and start it now")] = True,
    print_only: Annotated[
        bool, typer.Option("--print", help="print the unit file and where it goes; change nothing")
    ] = False,
) -> None:
    """Write the user unit flf2v-worker.service for `flf2v worker` on this FLF2V_HOME, enable and start it.

    Options after `--` go to the worker, e.g. `flf2v service install -- --gpus 0,1`.
    """
    _check_worker_args(ctx.args)
    home = Home.resolve()
    text = unit_text(home.root, ctx.args)
    path = unit_dir() / UNIT_NAME
    if print_only:  # changes nothing: not even the queue's folder is made
        typer.echo(f"# {path}\n{text}", nl=False)
        return
    _require_systemd()
    home.ensure()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    _run("daemon-reload")
    if start:
        _run("enable", "--now", UNIT_NAME)
    echo(
        f"installed {path}"
        + (" and started it" if start else f" (start it: systemctl --user enable --now {UNIT_NAME})")
    )
    echo(f"logs: journalctl --user -u {UNIT_NAME} -f; status: flf2v service status")
    if not lingering(getpass.getuser()):
        echo(LINGER_ADVICE.format(user=getpass.getuser()))


@handles_errors
def uninstall() -> None:
    """Stop and disable the worker's service and remove its unit file. Running renders keep running; the
    next `flf2v worker` re-attaches them."""
    _require_systemd()
    path = unit_dir() / UNIT_NAME
    if not path.exists():
        echo(f"nothing to uninstall: there is no {path}")
        return
    _run("disable", "--now", UNIT_NAME)
    path.unlink()
    _run("daemon-reload")
    echo(f"stopped, disabled and removed {path}")


@handles_errors
def status() -> None:
    """Whether the worker's service is installed, enabled and running, and whether it survives logout."""
    _require_systemd()
    path = unit_dir() / UNIT_NAME
    if not path.exists():
        echo(f"not installed (no {path}); install it with flf2v service install")
        raise typer.Exit(3)  # as systemctl status says of a unit that is not running
    enabled = systemctl("is-enabled", UNIT_NAME).stdout.strip() or "unknown"
    active = systemctl("is-active", UNIT_NAME).stdout.strip() or "unknown"
    echo(f"{UNIT_NAME}: {active}, {enabled} ({path})")
    user = getpass.getuser()
    linger = lingering(user)
    if linger is False:
        echo(LINGER_ADVICE.format(user=user))
    elif linger:
        echo(f"lingering is on for {user}: it runs from boot, logged in or not")
    echo(f"logs: journalctl --user -u {UNIT_NAME} -f")
    if active != "active":
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    service_app.command(
        "install",
        epilog="Example:\n\n  flf2v service install -- --gpus 0,1\n\n  flf2v service install --print",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(install)
    service_app.command("uninstall", epilog="Example:\n\n  flf2v service uninstall")(uninstall)
    service_app.command("status", epilog="Example:\n\n  flf2v service status")(status)
    app.add_typer(service_app, name="service")
