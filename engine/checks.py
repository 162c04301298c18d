"""Checks of the user's files that run before any weights load (torch-free).

Every problem becomes a BadInputError with one line naming the file and what to do about it.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import BadInputError
from engine.tasks import TaskConfig

OFFICIAL = "official"
DIFFUSERS = "diffusers"


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    width: int
    height: int
    mode: str


def path_exists(path: Path, what: str) -> bool:
    """Path.exists, with the errors it does not swallow (a name too long for the file system) said as bad
    input naming the path."""
    try:
        return path.exists()
    except OSError as exc:
        raise BadInputError(f"{what} {path} cannot be looked up ({exc.strerror or exc})") from None


def check_image(path: str | os.PathLike[str], what: str = "image") -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not path_exists(p, what):
        raise BadInputError(f"{what} {p} does not exist")
    if not p.is_file():
        raise BadInputError(f"{what} {p} is not a file")
    if not os.access(p, os.R_OK):
        raise BadInputError(f"{what} {p} is not readable (check its permissions)")
    if p.stat().st_size == 0:
        raise BadInputError(f"{what} {p} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size
                limit = Image.MAX_IMAGE_PIXELS
                if limit is not None and width * height > limit:
                    raise BadInputError(
                        f"{what} {p} is {width}x{height}, over the {limit:,}-pixel safety limit; downscale it first"
                    )
                im.load()
                mode = im.mode
    except BadInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInputError(f"{what} {p} is too large to decode safely (decompression bomb); downscale it") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{what} {p} is not an image format Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"{what} {p} is corrupt or truncated ({exc})") from None
    if width < 1 or height < 1:
        raise BadInputError(f"{what} {p} has no pixels")
    return ImageInfo(path=p, width=width, height=height, mode=mode)


@dataclass
class CheckpointLayout:
    kind: str  # OFFICIAL or DIFFUSERS
    root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)  # component -> the files it reads


def _problem(path: Path) -> str | None:
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a file"
    if not os.access(path, os.R_OK):
        return "not readable"
    if path.stat().st_size == 0:
        return "empty"
    name = path.name
    try:
        if name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
        elif name.endswith(".safetensors"):
            return _safetensors_problem(path)
        elif name.endswith(".pth"):
            with open(path, "rb") as fh:
                magic = fh.read(2)
            if magic == b"PK":
                with zipfile.ZipFile(path) as zf:
                    if not any(n.endswith("data.pkl") for n in zf.namelist()):
                        return "not a torch checkpoint (no data.pkl)"
            elif magic[:1] != b"\x80":
                return "not a torch checkpoint"
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, RecursionError) as exc:
        return f"unreadable ({exc.__class__.__name__})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """Read only the header (8-byte length, then JSON): a download cut short shows as tensors that end past
    the end of the file, found here in microseconds instead of at load, minutes into a render."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "truncated"
        (length,) = struct.unpack("<Q", head)
        if length > 100_000_000 or length > size - 8:
            return "not a safetensors file (bad header)"
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        return "not a safetensors file (bad header)"
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            return f"not a safetensors file: bad entry for {key[:40]!r}"
        end = max(end, offsets[1])
    held = size - 8 - length
    if end > held:
        return f"truncated: its header describes {end:,} bytes of tensors, the file holds {held:,}"
    if end < held:
        return f"not a safetensors file: {held - end:,} bytes after the last tensor"
    return None


def _weights(folder: Path, stem: str) -> list[Path]:
    """The weight files of one component: a single file, or an index and the shards it names."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError):
            return [index]
        return [index, *(folder / s for s in shards)]
    if single.exists():
        return [single]
    shards = sorted(folder.glob(f"{stem}-*-of-*.safetensors"))
    return shards or [single]


def _tokenizer_files(folder: Path) -> list[Path]:
    fast = folder / "tokenizer.json"
    return [
        folder / "tokenizer_config.json",
        fast if fast.exists() or not (folder / "spiece.model").exists() else folder / "spiece.model",
    ]


def detect_layout(ckpt_dir: str | os.PathLike[str], task: TaskConfig) -> CheckpointLayout:
    root = Path(ckpt_dir)
    if not path_exists(root, "checkpoint folder"):
        raise BadInputError(f"checkpoint folder {root} does not exist")
    if not root.is_dir():
        raise BadInputError(f"checkpoint path {root} is not a folder")
    if (root / "model_index.json").exists():
        files = {
            "index": [root / "model_index.json"],
            "transformer": [
                root / "transformer" / "config.json",
                *_weights(root / "transformer", "diffusion_pytorch_model"),
            ],
            "vae": [root / "vae" / "config.json", *_weights(root / "vae", "diffusion_pytorch_model")],
            "text_encoder": [root / "text_encoder" / "config.json", *_weights(root / "text_encoder", "model")],
            "tokenizer": _tokenizer_files(root / "tokenizer"),
            "image_encoder": [root / "image_encoder" / "config.json", *_weights(root / "image_encoder", "model")],
        }
        return CheckpointLayout(DIFFUSERS, root, files)
    if (root / "config.json").exists() or (root / task.vae_checkpoint).exists():
        files = {
            "transformer": [root / "config.json", *_weights(root, "diffusion_pytorch_model")],
            "vae": [root / task.vae_checkpoint],
            "text_encoder": [root / task.t5_checkpoint],
            "tokenizer": _tokenizer_files(root / task.t5_tokenizer),
            "image_encoder": [root / task.clip_checkpoint],
        }
        return CheckpointLayout(OFFICIAL, root, files)
    raise BadInputError(
        f"{root} is neither an official Wan2.1 checkpoint (config.json, {task.vae_checkpoint}, ...) "
        "nor a diffusers one (model_index.json)"
    )


def check_checkpoint(ckpt_dir: str | os.PathLike[str], task: TaskConfig) -> CheckpointLayout:
    """Detect the layout and confirm every file it needs is present and readable."""
    layout = detect_layout(ckpt_dir, task)
    bad: dict[Path, str] = {}  # a file two components read is named once
    for paths in layout.files.values():
        for path in paths:
            problem = _problem(path)
            if problem:
                bad.setdefault(path.relative_to(layout.root), problem)
    if bad:
        # Every file by name, relative to the root to keep the one line short: a user fixing a download
        # should not have to rerun to learn about the next missing file.
        listed = ", ".join(f"{path} ({problem})" for path, problem in bad.items())
        count = f"{len(bad)} file{'s' if len(bad) > 1 else ''}"
        raise BadInputError(f"{layout.kind} checkpoint {layout.root} is incomplete ({count}): {listed}")
    return layout


def check_save_file(save_file: str | None) -> Path | None:
    """The mp4 is written after the whole render: a folder in its place is found now, not minutes later.
    Returns the nearest folder of it that exists (where the writer will make the rest), None without a file."""
    if not save_file:
        return None
    target = Path(save_file)
    if path_exists(target, "--save_file") and target.is_dir():
        raise BadInputError(f"--save_file {target} is a folder; give a file name in it, e.g. {target / 'video.mp4'}")
    folder = next((p for p in target.parents if path_exists(p, "--save_file's folder")), None)
    if folder is not None and not folder.is_dir():
        raise BadInputError(f"--save_file {target}: {folder} is a file, not a folder")
    return folder
