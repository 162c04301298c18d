"""The house's boundaries (the import contracts in pyproject.toml): they hold on this tree, each one breaks
when its rule is broken, and the app's allow-list of engine modules is engine.APP_MODULES."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import engine

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("engine", "storage", "flf2v_tui")

# One import that breaks each contract, appended to a module of a copy of the tree, and how it is reported.
VIOLATIONS = (
    ("engine/tasks.py", "import storage.paths", "engine.tasks -> storage.paths"),  # the engine reaches up
    ("storage/paths.py", "import flf2v_tui.term", "storage.paths -> flf2v_tui.term"),  # storage reaches up
    # the app loads an engine module that imports torch
    ("flf2v_tui/commands/jobs.py", "from engine import pipeline", "flf2v_tui.commands.jobs -> engine.pipeline"),
    ("engine/limits.py", "import torch", "engine.limits -> torch"),  # a module the app imports pulls in torch
    # the screens' data needs Textual
    ("flf2v_tui/screen_data/machine.py", "import textual.widgets", "flf2v_tui.screen_data.machine -> textual"),
    ("flf2v_tui/worker/pool.py", "from flf2v_tui.worker import loop", ".pool -> .loop"),  # loop.py imports pool.py
)


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["importlinter"]["contracts"]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The packages under `root`, before the installed ones; wide lines, so that no import is wrapped in two.
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "400"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def _tally(output: str) -> tuple[int, int]:
    found = re.search(r"Contracts: (\d+) kept, (\d+) broken\.", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))


def test_every_contract_holds_on_this_tree():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _tally(result.stdout) == (len(_contracts()), 0)


def test_each_contract_breaks_when_its_rule_is_broken(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert _lint_imports(tmp_path).returncode == 0, "the copy should hold before anything is broken"

    for module, line, _ in VIOLATIONS:
        with open(tmp_path / module, "a", encoding="utf-8") as f:
            f.write(f"\n{line}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert _tally(result.stdout) == (0, len(_contracts())), result.stdout
    for module, line, reported in VIOLATIONS:
        assert reported in result.stdout, f"{line} in {module} was not reported:\n{result.stdout}"


def test_the_apps_engine_modules_are_engine_app_modules():
    listed = {f"engine.{name}" for name in engine.APP_MODULES}
    by_name = {c["name"]: c for c in _contracts()}
    allowed = by_name["flf2v_tui and storage import only the torch-free engine modules of engine.APP_MODULES"]
    imported = {expression.split(" -> ")[1] for expression in allowed["ignore_imports"]}
    torch_free = by_name["the engine modules of engine.APP_MODULES import no torch"]
    assert imported == listed
    assert set(torch_free["source_modules"]) == listed | {"engine"}
