"""The collective operations of a distributed refinement, on torch.distributed.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every rank samples and reweights its
own state points; their losses, gradients and Gauss–Newton Jacobians are summed by all-reduce,
so that every rank takes the same step. Sums are made exact and independent of the number of
ranks: each rank fills only its own rows of a [n_state_points, ...] tensor (zeros elsewhere), the
all-reduce adds zeros to them, and the rows are then added in state-point order on every rank.

The backend is gloo for CPU runs and nccl for CUDA runs. A rank that dies makes the others'
next collective fail (or torchrun stops them): :class:`RankLost` says what happened and how
to continue (``--resume`` from the last finished update).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

#: how long a collective waits for a rank that does not answer
DEFAULT_TIMEOUT_S = 1800.0


class RankLost(RuntimeError):
    """Another rank of a distributed run stopped; the run cannot continue."""


class Collective:
    """One process: every operation is the identity (the base class and the single-rank case)."""

    rank = 0
    world_size = 1

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes logs, plots and checkpoints (rank 0)."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over ranks (same shape, dtype and device)."""
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        return [obj]

    def barrier(self) -> None:
        """Wait until every rank got here."""

    def close(self) -> None:
        """End the process group (if this object started it)."""


class TorchCollective(Collective):
    """Collectives of an initialised ``torch.distributed`` process group.

    Args:
        device: where tensors are reduced (CUDA for nccl, CPU for gloo).
        owns_group: destroy the process group in :meth:`close`.
    """

    def __init__(self, device: torch.device, owns_group: bool = False) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device
        self.owns_group = owns_group

    def _failed(self, what: str, exc: BaseException) -> RankLost:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RankLost(f"rank {self.rank}: another rank of the run stopped during {what} ({first}); the finished "
                        f"updates are in the run directory's checkpoints/latest.pt: continue with --resume")

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().to(self.device).clone()
        try:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        except (RuntimeError, dist.DistError) as exc:
            raise self._failed("an all-reduce", exc) from None
        return out.to(tensor.device)

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        try:
            dist.all_gather_object(out, obj)
        except (RuntimeError, dist.DistError) as exc:
            raise self._failed("an all-gather", exc) from None
        return out

    def barrier(self) -> None:
        try:
            dist.barrier()
        except (RuntimeError, dist.DistError) as exc:
            raise self._failed("a barrier", exc) from None

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def launched_distributed() -> bool:
    """Whether this process was started by torchrun (or srun with the same variables) with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: torch.device) -> str:
    """nccl for CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device) -> torch.device:
    """A CUDA device of this rank (``LOCAL_RANK``) when ``device`` is CUDA, else ``device``."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local % max(1, torch.cuda.device_count()))


def start_collective(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Collective:
    """The collective of this process: a torch.distributed group when launched with several ranks
    (environment variables of torchrun: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``),
    else the single-process :class:`Collective`."""
    if not launched_distributed():
        return Collective()
    if dist.is_initialized():
        return TorchCollective(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device), timeout=datetime.timedelta(seconds=timeout_s))
    return TorchCollective(device, owns_group=True)
