# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
# TORCH_SPEC pins the CPU wheel that this kind of machine has on disk; on a GPU workstation use e.g.
#   make demo TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean tmux

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flf2v demo

test: $(STAMP) tmux
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

# The TUI's real-terminal test drives `flf2v tui` through tmux; where tmux is missing and can be installed
# (root with apt-get, as on CI) it is installed, otherwise that one test is skipped with the reason.
tmux:
	@command -v tmux >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq tmux >/dev/null); } || \
		echo "tmux is not installed; the real-terminal TUI test will be skipped"

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/engine_step.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
