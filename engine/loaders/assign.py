"""Build a model with no weights, then stream (library_key, tensor) pairs into it, strictly.

The model is built under accelerate's `init_empty_weights(include_buffers=False)`: parameters live on the meta
device, while non-persistent buffers (rotary tables, position ids) are computed as usual, because no
checkpoint stores them. Each incoming tensor becomes the parameter itself (no second copy of the model), in
the requested dtype on the requested device, except where the library keeps a module in float32.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import torch
from accelerate import init_empty_weights
from torch import Tensor, nn

from engine.errors import BadInputError

M = TypeVar("M", bound=nn.Module)


def build_empty(factory: Callable[[], M]) -> M:
    """`factory()` with its parameters on the meta device: no memory, no random initialisation."""
    with init_empty_weights(include_buffers=False):
        return factory()


def keep_fp32_by_name(modules: Iterable[str]) -> Callable[[str], bool]:
    """A key stays float32 when one of its dotted parts is one of `modules` (diffusers' from_pretrained rule)."""
    names = frozenset(modules)
    return lambda key: not names.isdisjoint(key.split("."))


def diffusers_keep_fp32(model: nn.Module) -> Callable[[str], bool]:
    """diffusers applies `_keep_in_fp32_modules` whatever half dtype is asked for."""
    return keep_fp32_by_name(getattr(model, "_keep_in_fp32_modules", None) or ())


def transformers_keep_fp32(model: nn.Module, dtype: torch.dtype) -> Callable[[str], bool]:
    """transformers keeps `_keep_in_fp32_modules` in float32 only under float16, the `_strict` ones under
    float16 and bfloat16 (PreTrainedModel._get_dtype_plan)."""
    names: set[str] = set()
    if dtype == torch.float16:
        names |= set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype in (torch.float16, torch.bfloat16):
        names |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    return keep_fp32_by_name(names)


def ignored_unexpected(model: nn.Module) -> tuple[str, ...]:
    """The library's patterns of checkpoint keys its from_pretrained skips without complaint."""
    return tuple(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ())


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_match(missing: Sequence[str], unexpected: Sequence[str], what: str, source: str) -> None:
    """A BadInputError listing the model's keys the checkpoint lacks and the checkpoint's keys it does not use."""
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_listing(sorted(missing))})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listing(sorted(unexpected))})")
    raise BadInputError(f"{what} weights in {source} do not match the model: {'; '.join(parts)}")


def is_ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(re.search(pattern, key) for pattern in ignore)


def _place(model: nn.Module, key: str, value: Tensor) -> None:
    prefix, _, name = key.rpartition(".")
    module = model.get_submodule(prefix)
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[name] = value


def assign_weights(
    model: nn.Module,
    weights: Iterable[tuple[str, Tensor]],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    what: str,
    source: str,
    keep_fp32: Callable[[str], bool] = lambda key: False,
    tied: Mapping[str, str] | None = None,
    ignore: Sequence[str] = (),
) -> None:
    """Give every parameter of an empty `model` its tensor from `weights`.

    Every key the model expects must come exactly as shaped, and nothing else may come: otherwise a
    BadInputError names the keys and `source`. `tied` maps an alias to the key it shares storage with; the
    checkpoint may hold either of the two. Unexpected keys matching a regex in `ignore` are dropped silently
    (the library's own `_keys_to_ignore_on_load_unexpected`).
    """
    tied = dict(tied or {})
    expected = {k: tuple(t.shape) for k, t in model.state_dict(keep_vars=True).items()}
    unexpected: list[str] = []
    loaded: set[str] = set()
    for key, tensor in weights:
        if key not in expected:
            if not is_ignored(key, ignore):
                unexpected.append(key)
            continue
        if tuple(tensor.shape) != expected[key]:
            raise BadInputError(
                f"{what} weight {key} in {source} has shape {tuple(tensor.shape)}, the model expects {expected[key]}"
            )
        target = torch.float32 if tensor.is_floating_point() and keep_fp32(key) else dtype
        value = tensor.to(device=device, dtype=target) if tensor.is_floating_point() else tensor.to(device=device)
        if value.data_ptr() == tensor.data_ptr():
            # Own the memory: the source may be a view of a mapped file or of a fused tensor.
            value = value.clone()
        _place(model, key, value)
        loaded.add(key)
    for alias, key in tied.items():
        if key in loaded or alias in loaded:
            src, dst = (key, alias) if key in loaded else (alias, key)
            prefix, _, name = dst.rpartition(".")
            setattr(model.get_submodule(prefix), name, model.get_parameter(src))
            loaded.add(dst)
    missing = sorted(k for k in expected if k not in loaded)
    check_match(missing, unexpected, what, source)
    # Parameters are in place; this moves the computed buffers.
    model.to(device)
    model.eval().requires_grad_(False)
