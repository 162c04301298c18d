"""Weights that are read row range by row range, so that a rank can load its FSDP shard and nothing else.

safetensors: the header gives each tensor's byte range, and a rank reads only the bytes of its rows, with
plain positioned reads into memory it owns. (safe_open's slices are views of the memory-mapped file; the
page-cache pages they touch count in the rank's resident memory, and with the large page-cache folios of
recent kernels far more than the rows asked for: measured on this project's box, a rank reading half of
every tensor of an 84 MB DiT that way gained 78 MB of mapped file besides its 42 MB shard.)

Official `.pth` files, in the zip format that `torch.save` has written since torch 1.6, are memory-mapped by
`torch.load(mmap=True)`: each tensor is a view of the mapped file, and slicing rows reads only around them.
Those pages are the host's page cache, shared by every rank that maps the file, not a copy per rank; each
rank's own memory holds only its shard. So no conversion cache is written. A legacy (pre-zip) `.pth` cannot
be mapped and is read whole by every rank, with a warning in the log.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from engine.errors import BadInputError
from engine.loaders.files import load_pth, reading, safetensors_header

log = logging.getLogger("flf2v.engine")


@dataclass(frozen=True)
class LazyTensor:
    """A checkpoint tensor that is not read yet: its shape, and `rows(start, stop)` to read part of dim 0."""

    shape: tuple[int, ...]
    rows: Callable[[int, int], Tensor]
    path: Path

    def read_all(self) -> Tensor:
        return self.rows(0, self.shape[0]) if self.shape else self.rows(0, 0)


# The safetensors format's dtype names.
_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def _read_exactly(path: Path, offset: int, out: Tensor) -> None:
    view = memoryview(out.numpy()).cast("B")
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        done = 0
        while done < len(view):
            got = fh.readinto(view[done:])
            if not got:
                raise BadInputError(f"weight file {path} is truncated: a tensor's bytes end past the end of the file")
            done += got


def _safetensors_rows(
    path: Path, offset: int, shape: tuple[int, ...], dtype: torch.dtype
) -> Callable[[int, int], Tensor]:
    row_bytes = math.prod(shape[1:]) * dtype.itemsize  # a 0-dim tensor is one "row" of one item

    def rows(start: int, stop: int) -> Tensor:
        count = stop - start if shape else 1
        out = torch.empty(count * row_bytes, dtype=torch.uint8)
        with reading(path):
            _read_exactly(path, offset + start * row_bytes, out)
        return out.view(dtype).reshape((count, *shape[1:]) if shape else ())

    return rows


def safetensors_lazy(paths: Iterable[Path]) -> Iterator[tuple[str, LazyTensor]]:
    for path in paths:
        data_start, header = safetensors_header(path)
        for key, info in header.items():
            with reading(path):
                dtype = _DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(v) for v in info["data_offsets"])
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise BadInputError(f"weight file {path} is corrupt: tensor {key} has the wrong byte length")
            yield key, LazyTensor(shape, _safetensors_rows(path, data_start + begin, shape, dtype), path)


def _view_rows(path: Path, tensor: Tensor) -> Callable[[int, int], Tensor]:
    def rows(start: int, stop: int) -> Tensor:
        with reading(path):
            # clone(): the caller must own the memory, not keep the mapped file alive through a view.
            return (tensor[start:stop] if tensor.dim() else tensor).clone()

    return rows


def pth_lazy(path: Path) -> Iterator[tuple[str, LazyTensor]]:
    if not zipfile.is_zipfile(path):
        log.warning(
            f"{path} is a legacy (pre-zip) torch file, which cannot be memory-mapped: every rank reads it whole. "
            "Re-save it once with torch.save(torch.load(path), path) to load only each rank's shard."
        )
    for key, tensor in load_pth(path).items():
        yield key, LazyTensor(tuple(tensor.shape), _view_rows(path, tensor), path)


def renamed(
    pairs: Iterable[tuple[str, LazyTensor]], library_keys: Callable[[str], tuple[str, ...]]
) -> Iterator[tuple[str, LazyTensor]]:
    """Checkpoint names -> library names; the key maps only rename, so a lazy tensor stays lazy."""
    for key, lazy in pairs:
        for name in library_keys(key):
            yield name, lazy


def as_dtype(tensor: Tensor, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    if tensor.is_floating_point():
        return tensor.to(device=device, dtype=dtype)
    return tensor.to(device=device)
