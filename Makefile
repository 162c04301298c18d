# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing and install the
# exact, hash-checked versions of requirements-lock.txt; `make lock` refreshes that file from pyproject.toml.
# Torch stays outside the lock, pinned by TORCH_SPEC (the CPU wheel that this kind of machine has on disk);
# on a GPU workstation pick the CUDA build of the same version, e.g.
#   make demo TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
LOCK := requirements-lock.txt
PIP_TOOLS ?= pip-tools==7.7.0
LOCK_FLAGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo slurm-demo test lint bench clean tmux lock

# The lock holds every dependency (torch's too, and the build's setuptools), so it installs with --no-deps
# and nothing unpinned slips in; torch then finds its dependencies already there at the locked versions.
# The project itself is built with the locked setuptools (no build isolation, which would fetch the newest).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(BIN)/python -m pip check || { echo "$(VENV) does not satisfy pyproject.toml: run 'make lock' to refresh $(LOCK)"; exit 1; }
	@touch $(STAMP)

# Re-resolves pyproject.toml (its dev extras and build requirements included) to exact versions with hashes,
# keeping the versions already locked; `make lock LOCK_FLAGS=--upgrade` (or `--upgrade-package NAME`) moves
# them. Torch is resolved as its CPU build, TORCH_VERSION+cpu, so that no CUDA runtime wheel enters the lock;
# where pip cannot see that build, add its index:
#   make lock LOCK_FLAGS='--extra-index-url https://download.pytorch.org/whl/cpu'
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/python" -m pip install --quiet '$(PIP_TOOLS)' && \
	echo 'torch==$(TORCH_VERSION)+cpu' > "$$tmp/torch.txt" && \
	{ test ! -f $(LOCK) || cp $(LOCK) "$$tmp/lock.txt"; } && \
	"$$tmp/venv/bin/pip-compile" --quiet pyproject.toml --extra dev --all-build-deps --generate-hashes \
		--unsafe-package torch --constraint "$$tmp/torch.txt" --strip-extras --no-header \
		--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) --output-file "$$tmp/lock.txt" && \
	{ printf '%s\n' "$$LOCK_HEADER"; sed '/^# WARNING: The following packages were not pinned/,$$d' "$$tmp/lock.txt"; } \
		> $(LOCK)
	@echo "$(LOCK) written (torch is left to TORCH_SPEC, as pip-compile's warning says); commit it"

define LOCK_HEADER
# The exact versions that `make demo` and `make test` install, with the sha256 of every file each release
# publishes. Written by `make lock` (pip-compile --generate-hashes over pyproject.toml, its dev extras and its
# build requirements); do not edit by hand. pip installs it with --require-hashes --no-deps, so a file that
# changed on the index, or a dependency missing from here, stops the install instead of changing the program.
#
# Torch alone is not here: its wheel differs by machine (the local CPU build, or a CUDA build from PyTorch's
# index), and no one hash list covers both. It is pinned instead by TORCH_SPEC (torch==TORCH_VERSION) in the
# Makefile and installed after this file; its own dependencies (filelock, sympy, ...) are pinned here, resolved
# against torch's CPU build so that no CUDA runtime wheel is. Markers were resolved for the Python that ran
# `make lock`; on another Python version, run `make lock` there.
endef
export LOCK_HEADER

demo: $(STAMP)
	$(BIN)/flf2v demo

# The demo job on 2 nodes × 1 rank through a real Slurm brought up on this machine (root: slurm-wlm and munge
# are installed with apt-get when missing), then torn down; it prints the Slurm job, its sacct line and the video.
slurm-demo: $(STAMP)
	$(BIN)/python -m tests.functional.slurm_demo

test: $(STAMP) tmux
	$(BIN)/python -m ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# The TUI's real-terminal test drives `flf2v tui` through tmux; where tmux is missing and can be installed
# (root with apt-get, as on CI) it is installed, otherwise that one test is skipped with the reason.
tmux:
	@command -v tmux >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq tmux >/dev/null); } || \
		echo "tmux is not installed; the real-terminal TUI test will be skipped"

# lint-imports checks the boundaries written down in pyproject.toml ([tool.importlinter]).
lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/engine_step.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache *.egg-info
