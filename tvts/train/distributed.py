"""Processes and devices: the only module that touches torch.distributed.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them the process is a single rank.
NCCL on GPU, gloo on CPU. Collectives here are no-ops in a single process, so training and
evaluation code calls them unconditionally.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool | None = None) -> DistEnv:
    """Join the process group torchrun described (if any) and pick this rank's device."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return DistEnv(rank, world, local_rank, device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0; gradients flow back to each rank's slice."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x), dim=0)


class _GatherKeepLocalGrad(torch.autograd.Function):
    """All-gather whose backward keeps only this rank's slice of the gradient, summing nothing
    across ranks: the official TVTS gather (see `gather_local_grad`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_local_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0; the gradient of each rank's own loss reaches
    only its own slice. With every rank computing the same full-batch loss, DDP's average then
    gives 1/W of the full-batch gradient: what the official code trained with."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _GatherKeepLocalGrad.apply(x)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is true on any (e.g. a preemption signal seen by one rank)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any) -> list[Any]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def wrap_ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """DDP across ranks (parameters without requires_grad are not synchronised); the model itself alone."""
    if env.world == 1:
        return model
    return DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)


def no_sync(engine: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's gradient all-reduce on a micro-batch that does not end an optimiser step."""
    if sync or not isinstance(engine, DistributedDataParallel):
        return contextlib.nullcontext()
    return engine.no_sync()


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA and CPU alike; float32 with amp="off", or where this torch's autocast
    does not support the dtype (said once: `tvts.train.precision`)."""
    from tvts.train import precision

    return precision.autocast(device, amp)
