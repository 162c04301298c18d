"""The README's CLI reference is kept in step with the app: every command has its row, and every option of a
command is named in it (the catalogue's subcommands in the catalogue section), read off the app itself."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from flf2v_tui.cli import app
from flf2v_tui.commands.options import ENGINE_NAMES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
# Commands whose row says "any engine flag" instead of listing them; `videos rerun` says "any submit flag".
ANY_ENGINE_FLAG = {("retry",), ("edit",), ("videos", "rerun")}


def section(title: str) -> str:
    start = README.index(title)
    return README[start : README.index("\n## ", start + len(title))]


def leaf_commands() -> list[tuple[tuple[str, ...], object]]:
    def walk(command: object, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
        below = getattr(command, "commands", None)
        if below is None:
            return [(prefix, command)]
        return [leaf for name, sub in below.items() for leaf in walk(sub, (*prefix, name))]

    return walk(typer.main.get_command(app), ())


def row_of(path: tuple[str, ...], table: str) -> str:
    """The table row whose first cell names the command (`videos ls` / `show`: a group's row names the rest)."""
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        words = {w for span in re.findall(r"`([^`]+)`", line.split(" | ")[0]) for w in span.split()}
        if set(path) <= words:
            return line
    raise AssertionError(f"no row of the CLI reference names `flf2v {' '.join(path)}`")


def test_every_command_and_option_is_in_the_cli_reference():
    table = section("### CLI reference")
    catalogue = section("## The catalogue")
    missing = []
    for path, command in leaf_commands():
        row = row_of(path, table)
        where = catalogue if path[0] == "videos" else row
        for param in command.params:  # type: ignore[attr-defined]
            spellings = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
            if not spellings or (path in ANY_ENGINE_FLAG and param.name in ENGINE_NAMES) or path == ("videos", "rerun"):
                continue
            if not any(re.search(rf"{re.escape(s)}(?![\w-])", where) for s in spellings):
                missing.append(f"flf2v {' '.join(path)} {spellings[0]}")
    assert missing == []
