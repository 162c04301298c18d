"""flf2v: a job queue, a GPU-aware worker, a CLI and a TUI around the engine.

Imports stay light here: the shim and `flf2v ls` import this package and must never pull in torch.
"""

__version__ = "0.1.0"
