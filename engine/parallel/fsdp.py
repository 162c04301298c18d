"""FSDP2 (`fully_shard`) for the DiT and T5, loaded rank-locally: no rank ever holds the whole model.

The model is built with meta parameters, sharded (one unit per block, then the root), and only then
materialised: `to_empty` allocates each rank's shard, which is filled with that rank's rows of every
checkpoint tensor, read lazily (see `engine.loaders.lazy`). FSDP2 shards dim 0 like `torch.chunk`: rank r
owns rows [r * ceil(n / world), ...), the last ranks fewer or none.

Parameters are stored in the dtypes the unsharded load gives them (on GPU the official bf16, with the
modules diffusers and transformers keep in float32 left in float32), so the policy below casts nothing on
the way in: all-gathers move bf16, and the sharded forward computes exactly what the unsharded one does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from engine.errors import BadInputError
from engine.loaders.assign import check_match, is_ignored
from engine.loaders.lazy import LazyTensor, as_dtype


def precision_policy() -> MixedPrecisionPolicy:
    # param_dtype None: keep each parameter's stored dtype (already the official compute dtype). Reductions
    # only happen in backward, which inference never runs; float32 is what the official FSDP wrapper asks.
    return MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32, cast_forward_inputs=False)


def shard_rows(rows: int, world: int, rank: int) -> tuple[int, int]:
    """[start, stop) of dim 0 that FSDP2 gives `rank` of `world` (torch.chunk's split)."""
    chunk = -(-rows // world) if rows else 0
    start = min(rank * chunk, rows)
    return start, min(start + chunk, rows)


def _tie(model: nn.Module, tied: Mapping[str, str]) -> None:
    """Make each alias the very parameter of its key, so that FSDP shards (and we load) it once."""
    for alias, key in tied.items():
        prefix, _, name = alias.rpartition(".")
        setattr(model.get_submodule(prefix), name, model.get_parameter(key))


def _set_dtypes(model: nn.Module, dtype: torch.dtype, keep_fp32: Callable[[str], bool]) -> None:
    """Give the meta parameters the dtypes the unsharded load would give them, ties preserved."""
    replaced: dict[int, nn.Parameter] = {}
    for prefix, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) not in replaced:
                key = f"{prefix}.{name}" if prefix else name
                target = param.dtype
                if param.is_floating_point():
                    target = torch.float32 if keep_fp32(key) else dtype
                replaced[id(param)] = nn.Parameter(torch.empty_like(param, dtype=target), requires_grad=False)
            module._parameters[name] = replaced[id(param)]


def _check(
    model: nn.Module,
    index: Mapping[str, LazyTensor],
    tied: Mapping[str, str],
    ignore: Sequence[str],
    what: str,
    source: str,
) -> None:
    expected = {k: tuple(t.shape) for k, t in model.state_dict(keep_vars=True).items()}
    unexpected = [k for k in index if k not in expected and not is_ignored(k, ignore)]
    for key, lazy in index.items():
        if key in expected and lazy.shape != expected[key]:
            raise BadInputError(
                f"{what} weight {key} in {source} has shape {lazy.shape}, the model expects {expected[key]}"
            )
    pairs = {**tied, **{key: alias for alias, key in tied.items()}}
    missing = [k for k in expected if k not in index and pairs.get(k) not in index]
    check_match(missing, unexpected, what, source)


def load_sharded(
    model: nn.Module,
    blocks: Iterable[nn.Module],
    weights: Iterable[tuple[str, LazyTensor]],
    *,
    mesh: DeviceMesh,
    dtype: torch.dtype,
    device: torch.device,
    what: str,
    source: str,
    keep_fp32: Callable[[str], bool] = lambda key: False,
    tied: Mapping[str, str] | None = None,
    ignore: Sequence[str] = (),
) -> nn.Module:
    """Shard an empty (meta) `model` over `mesh`, one FSDP unit per block and the root, and fill each
    rank's shard from the lazy `weights`. Keys are checked as strictly as the unsharded loader does."""
    tied = dict(tied or {})
    index = dict(weights)
    _check(model, index, tied, ignore, what, source)
    _tie(model, tied)
    _set_dtypes(model, dtype, keep_fp32)
    policy = precision_policy()
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    # Buffers are computed at construction (rotary tables) and no checkpoint has them: keep their values.
    buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    model.to_empty(device=device)
    rank, world = mesh.get_local_rank(), mesh.size()
    aliases = {**tied, **{key: alias for alias, key in tied.items()}}
    with torch.no_grad():
        for name, buf in model.named_buffers():
            buf.copy_(buffers[name])
        for name, param in model.named_parameters():
            lazy = index[name] if name in index else index[aliases[name]]
            local = param.to_local()  # type: ignore[attr-defined]
            start, stop = shard_rows(lazy.shape[0], world, rank)
            if local.shape[0] != stop - start:
                raise RuntimeError(
                    f"FSDP gave rank {rank} {local.shape[0]} rows of {name} ({lazy.shape[0]} in all), where "
                    f"torch.chunk's split gives {stop - start}: this torch version shards differently; "
                    "update shard_rows"
                )
            if stop > start:
                local.copy_(as_dtype(lazy.rows(start, stop), local.dtype, device))
    model.eval().requires_grad_(False)
    return model


def reshard_root(model: nn.Module) -> None:
    """Free the whole copy of an FSDP2 root's own parameters after use. FSDP2 never reshards a root after its
    forward (it expects the backward to need them at once), so T5's root would keep its 256k x 4096 shared
    embedding whole on every rank for the rest of the run. Nothing to do for a model that is not sharded."""
    if isinstance(model, FSDPModule):
        model.reshard()


def root_is_sharded(model: FSDPModule) -> bool:
    """Whether every parameter the root itself registers is its shard (a DTensor), not the whole tensor."""
    from torch.distributed.tensor import DTensor

    blocks = {id(p) for m in model.modules() if m is not model and isinstance(m, FSDPModule) for p in m.parameters()}
    return all(isinstance(p, DTensor) for p in model.parameters() if id(p) not in blocks)
