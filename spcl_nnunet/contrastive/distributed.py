"""Contrastive batches across processes (DDP): every rank's views are negatives for every other.

Every rank computes the loss on the *global* batch: its own features and every other rank's,
gathered in rank order with nnU-Net's ``AllGatherGrad`` (all-gather forward; backward sums the
incoming gradient over ranks and keeps this rank's slot). Each rank's loss is then the loss L of
one process on the concatenated batch, with the same self-paced weights, mean positive weight and
heat-map; the gather's backward gives each rank W * dL/d(own features), and averaging the
parameter gradients over the W ranks (DDP's all-reduce, or :func:`average_gradients` where the
forward bypasses DDP) yields exactly dL/dtheta.

With one process (no process group, or a group of one) every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch import distributed as dist

__all__ = ["world_size", "gather_with_grad", "gather_tensor", "gather_objects", "average_gradients",
           "broadcast_module", "per_rank_count"]


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: Tensor) -> Tensor:
    """(B_r, ...) on every rank -> (W * B_r, ...) in rank order, differentiable (every rank must
    pass the same shape)."""
    if world_size() == 1:
        return x
    from nnunetv2.utilities.ddp_allgather import AllGatherGrad

    gathered = AllGatherGrad.apply(x.contiguous())
    return gathered.reshape(-1, *x.shape[1:])


def gather_tensor(x: Tensor) -> Tensor:
    """(B_r, ...) -> (W * B_r, ...) in rank order, without gradient (labels, meta-label codes)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_objects(items: Sequence[Any]) -> list[Any]:
    """Every rank's list concatenated in rank order (case names of a batch)."""
    if world_size() == 1:
        return list(items)
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, list(items))
    return [item for part in out for item in part]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Mean of each parameter's gradient over the ranks (what DDP's reducer does), for updates
    whose forward does not go through a DDP-wrapped module. A parameter without a gradient counts
    as zeros, so that every rank joins the same all-reduces."""
    size = world_size()
    if size == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(size)


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (a module outside DDP, such as the
    projector, starts identical everywhere)."""
    if world_size() == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src)


def per_rank_count(total: int, what: str) -> int:
    """``total`` split evenly over the ranks, or a ValueError that says what to change (the
    gathers need the same shape on every rank)."""
    size = world_size()
    if total % size:
        raise ValueError(f"{what} = {total} does not split evenly over {size} processes (GPUs): the contrastive "
                         f"batch is gathered across GPUs and needs the same number on each; use a multiple of "
                         f"{size} (e.g. {size * max(1, round(total / size))})")
    return total // size
