"""Reading weight files lazily, with every failure turned into a BadInputError that names the file.

safetensors are read through `safe_open` (memory-mapped, one tensor at a time); `.pth` files through
`torch.load(..., mmap=True, weights_only=True)`, so a state dict costs no memory until a tensor is used.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import struct
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from engine.errors import BadInputError

# What a damaged file makes these readers raise. Out-of-memory is a RuntimeError too and is never the file's fault.
_READ_ERRORS = (
    OSError,
    RuntimeError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    AttributeError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    SafetensorError,
)


@contextlib.contextmanager
def reading(path: Path, what: str = "weight file") -> Iterator[None]:
    """Turn a read failure inside the block into a BadInputError naming `path`."""
    try:
        yield
    except BadInputError:
        raise
    except torch.OutOfMemoryError:
        raise
    except _READ_ERRORS as exc:
        raise BadInputError(f"{what} {path} is corrupt or unreadable ({exc.__class__.__name__}: {exc})") from exc


def read_json(path: Path) -> dict[str, Any]:
    with reading(path, "file"):
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise BadInputError(f"file {path} does not hold a JSON object")
    return data


def safetensors_files(paths: Iterable[Path]) -> list[Path]:
    """The weight shards among a component's files (an index file is only a list of them)."""
    return [p for p in paths if p.name.endswith(".safetensors")]


def safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(offset of the data section, {key: {"dtype", "shape", "data_offsets"}}) of one safetensors file."""
    with reading(path), open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise BadInputError(f"weight file {path} has no safetensors header")
    header.pop("__metadata__", None)
    return 8 + length, header


def safetensors_shapes(paths: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors headers, without reading any tensor data."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:
        _, header = safetensors_header(path)
        with reading(path):
            for key, info in header.items():
                shapes[key] = tuple(int(s) for s in info["shape"])
    return shapes


def safetensors_tensors(paths: Iterable[Path]) -> Iterator[tuple[str, Tensor]]:
    """(key, tensor) pairs, one tensor read at a time, file by file."""
    for path in paths:
        with reading(path):
            handle = safe_open(str(path), framework="pt", device="cpu")
            keys = list(handle.keys())
        for key in keys:
            with reading(path):
                tensor = handle.get_tensor(key)
            yield key, tensor


def load_pth(path: Path) -> dict[str, Tensor]:
    """A `.pth` state dict whose tensors are views of the memory-mapped file (not yet read)."""
    with reading(path):
        # mmap needs the zip format that torch.save has written since 1.6; older files load the slow way.
        state = torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path), weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BadInputError(f"weight file {path} is not a state dict of tensors")
    return state


def pth_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in load_pth(path).items()}


def pth_tensors(path: Path) -> Iterator[tuple[str, Tensor]]:
    """(key, tensor) pairs of a `.pth` state dict; the tensors are views of the mapped file."""
    yield from load_pth(path).items()
