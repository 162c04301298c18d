"""A command's error is one line: line breaks it quotes are shown as escapes, and a storage error that names no
file blames no disk in particular. (The real-process cases are in tests/functional/test_cli_error_lines.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from flf2v_tui.commands.common import die, handles_errors, one_line_error
from tests.disk_helpers import fill, small_tmpfs


def test_line_breaks_and_tabs_are_shown_as_escapes_and_other_controls_go(capsys):
    assert one_line_error("a\nb\r\nc\td") == "error: a\\nb\\r\\nc\\td"
    with pytest.raises(typer.Exit) as ended:
        die("first frame /x/a\nb\x1b[31m.png does not exist", 2)
    assert ended.value.exit_code == 2
    assert capsys.readouterr().err == "error: first frame /x/a\\nb.png does not exist\n"


def test_a_full_disk_that_the_error_does_not_name_is_not_blamed_on_the_home(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("FLF2V_HOME", str(home))

    @handles_errors
    def write_a_file(path: Path) -> None:
        with open(path, "w") as out:  # a write through an open file: its ENOSPC carries no file name
            out.write("x" * (1 << 20))

    with small_tmpfs(tmp_path / "small", "1m") as small:
        fill(small)
        with pytest.raises(typer.Exit) as ended:
            write_a_file(small / "more")
    assert ended.value.exit_code == 1
    said = capsys.readouterr().err
    assert said.startswith("error: disk full (No space left on device) writing a file the system did not name; ")
    assert said.endswith(f"(FLF2V_HOME is {home}) and try again\n") and said.count("\n") == 1
    assert "disk full on" not in said  # no folder is blamed, least of all the home's
