"""The README's captures of the TUI are the app's own, as it draws them now (tests/functional/readme_captures)."""

from __future__ import annotations

import difflib

from tests.functional.readme_captures import README, captures, with_captures


def test_the_readme_captures_are_what_the_app_draws_now():
    readme = README.read_text()
    fresh = with_captures(readme, captures())
    stale = list(difflib.unified_diff(readme.splitlines(), fresh.splitlines(), "README.md", "the app", lineterm=""))
    assert not stale, (
        "README.md's TUI captures are stale: run `.venv/bin/python -m tests.functional.readme_captures`\n"
        + "\n".join(stale[:40])
    )
