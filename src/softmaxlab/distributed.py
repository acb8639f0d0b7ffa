"""Data-parallel training on ``torch.distributed``: every process (rank) trains the same model.

Launched by ``torchrun`` (or ``softmaxlab train --nproc N``, which starts it), each rank holds the
whole data set and derives the same global shuffle from (seed, epoch). Each global batch of
``batch_size`` examples is cut into one contiguous share per rank (shares may be unequal, or
empty on the last batch); each rank computes the *sum* of its examples' gradients, one all-reduce
adds them, and every rank divides by the global batch and takes the same step, so the parameters
stay identical everywhere and equal those of one process up to float summation order. Losses,
accuracies and evaluation counts are summed across ranks. Only rank 0 prints and writes files.

With ``--shard`` each rank instead holds only its contiguous share of the training rows
(``data.rows.part_of``) and shuffles it with its own stream; every rank takes the same number of
steps as a replicated epoch, each step adding one chunk of every rank's shuffle
(``fast.Shard.batches``). The standardisation statistics and L-BFGS's full-batch sums are
summed over the shards.

A collective that does not complete within the group's timeout (a rank died or hangs) raises
``DistributedError`` naming this rank and the cause.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import ConfigError, DistributedError
from .fast import Shard

DEFAULT_TIMEOUT = 60.0  # seconds a collective may wait for the other ranks


def requested() -> bool:
    """Whether this process was started as one rank of several (torchrun's environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class Group:
    """This process's place in the job and the collectives training needs."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where this rank's collectives' tensors must be: its GPU under NCCL, else the CPU."""
        if dist.is_initialized() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _run(self, what: str, op, *args, **kwargs):
        try:
            return op(*args, **kwargs)
        except (RuntimeError, dist.DistBackendError) as e:
            cause = " ".join(str(e).split())[:300]
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} with the other ranks failed "
                f"(a rank died, hung or cannot be reached): {cause}") from None

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the ranks, in place; returns it."""
        self._run("summing a tensor", dist.all_reduce, t)
        return t

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank ``src``'s ``t`` on every rank, in place; returns it."""
        self._run("receiving a tensor from rank 0", dist.broadcast, t, src)
        return t

    def broadcast_json(self, obj=None):
        """Rank 0's JSON-able ``obj`` on every rank (sent as JSON text, never pickled)."""
        data = json.dumps(obj).encode() if self.is_main else b""
        size = self.broadcast(torch.tensor([len(data)], dtype=torch.int64, device=self.device))
        buffer = torch.zeros(int(size), dtype=torch.uint8, device=self.device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.broadcast(buffer)
        return json.loads(bytes(buffer.cpu().tolist()).decode()) if int(size) else None

    def shard(self, rows: tuple[int, ...] | None = None) -> Shard:
        """This rank's part in a data-parallel epoch, for ``fast.FastSGD.train_epoch``; ``rows``:
        each rank's training rows when each holds only its own (``--shard``)."""
        return Shard(self.rank, self.world_size, self.all_reduce, rows)

    def gather_sizes(self, n: int) -> tuple[int, ...]:
        """Every rank's ``n``, in rank order (one all-reduce)."""
        sizes = torch.zeros(self.world_size, dtype=torch.int64, device=self.device)
        sizes[self.rank] = n
        return tuple(int(k) for k in self.all_reduce(sizes).tolist())

    def grad_hook(self, flat: torch.Tensor, batch_examples: int) -> int:
        """The gradient -> step seam of a data-parallel step: sum the ranks' gradients (one
        all-reduce of all the parameters' gradients) and divide by the global batch."""
        self.all_reduce(flat)
        return batch_examples

    def agree(self, error: str | None) -> None:
        """Rank 0 tells the others whether it could go on (``error`` None) or not; a rank other
        than 0 raises DistributedError when rank 0 could not."""
        status = self.broadcast_json(error)
        if status is not None and not self.is_main:
            raise DistributedError(f"rank {self.rank}: rank 0 stopped the job: {status}")


def init(timeout: float = DEFAULT_TIMEOUT, use_cuda: bool = False) -> Group:
    """Join the job torchrun started (gloo on CPU, NCCL when training on GPUs); this rank's
    Group."""
    if not timeout > 0:
        raise ConfigError(f"--dist-timeout {timeout} is not allowed; it must be a number > 0")
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env["LOCAL_RANK"] or 0)
        local_world = int(env["LOCAL_WORLD_SIZE"] or 1)
    except (TypeError, ValueError):
        raise ConfigError(f"WORLD_SIZE is set but torchrun's other variables are not usable "
                          f"({env}); start the job with torchrun or `softmaxlab train --nproc N`") \
            from None
    if not dist.is_initialized():
        backend = "nccl" if use_cuda and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as e:
            raise DistributedError(f"rank {rank} of {world}: cannot join the job: "
                                   f"{' '.join(str(e).split())[:300]}") from None
    return Group(rank, world, local_rank, local_world)


def close() -> None:
    """Leave the job (if this process joined one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def train_epoch(model, loss, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                labels: torch.Tensor, batch_size: int, order: torch.Tensor, group: Group,
                prepare=None, rows: tuple[int, ...] | None = None) -> tuple[float, float]:
    """One data-parallel epoch of an nn.Module with a torch optimizer: per step, this rank's
    part of the step's batch (``fast.Shard.batches``; ``rows``: each rank's rows when the data is
    sharded), the gradient of its summed loss over the global batch size, one all-reduce of all
    the gradients, the step. Returns the epoch's (mean loss, accuracy) over all ranks."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    sums = torch.zeros(3, dtype=torch.float64, device=labels.device)  # loss, correct, examples
    for mine, k in zip(*group.shard(rows).batches(order, batch_size)):
        X = images_as_float(inputs, mine)
        if prepare is not None:
            X = prepare(X)
        y = labels.index_select(0, mine)
        optimizer.zero_grad()
        o = model(X)
        losses = loss.value(o, y) if y.numel() else o.sum(1)  # (an empty share: zero gradient)
        (losses.sum() / k).backward()
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        group.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        optimizer.step()
        sums += torch.stack([losses.detach().double().sum(), (o.argmax(1) == y).sum().double(),
                             torch.tensor(float(y.numel()), dtype=torch.float64,
                                          device=y.device)])
    group.all_reduce(sums)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def images_as_float(inputs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The examples at ``idx``: uint8 images as float (k, 1, H, W) in [0, 1], features as they are."""
    x = inputs.index_select(0, idx)
    return torch.div(x.unsqueeze(1), 255.0) if x.dtype == torch.uint8 else x


def evaluate_accuracy(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      group: Group) -> float:
    """The accuracy of ``model`` over this rank's ``batches`` and every other rank's, summed."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    counts = None  # correct, examples
    with torch.no_grad():
        for X, y in batches:
            batch = torch.stack([(model(X).argmax(1) == y).sum().double(),
                                 torch.tensor(float(y.numel()), dtype=torch.float64,
                                              device=y.device)])
            counts = batch if counts is None else counts + batch
    if counts is None:  # (this rank's part of the data is empty)
        counts = torch.zeros(2, dtype=torch.float64, device=group.device)
    group.all_reduce(counts)
    return float(counts[0] / max(float(counts[1]), 1.0))


def share_state(group: Group, session, history: list[dict]) -> list[dict]:
    """Rank 0's model, optimiser state and history on every rank (after rank 0 resumed a run:
    the other ranks, maybe on other machines, need not see the run folder). Returns the history.
    The tensors go as tensors, everything else as JSON."""
    from .checkpoint import decode_state, encode_state

    with torch.no_grad():
        for p in session.model.parameters():
            buffer = group.broadcast(p.detach().contiguous())
            p.copy_(buffer)
    tensors: dict[str, torch.Tensor] = {}
    structure = encode_state(session.optimizer.state_dict()["state"], "state", tensors) \
        if group.is_main else None
    shapes = {k: [list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in tensors.items()}
    meta = group.broadcast_json({"state": structure, "shapes": shapes, "history": history}
                                if group.is_main else None)
    if not group.is_main:
        tensors = {k: torch.zeros(shape, dtype=getattr(torch, dtype), device=group.device)
                   for k, (shape, dtype) in meta["shapes"].items()}
    for name in sorted(tensors):
        tensors[name] = group.broadcast(tensors[name].contiguous())
    if not group.is_main and meta["state"]:
        sd = session.optimizer.state_dict()
        sd["state"] = decode_state(meta["state"], tensors, Path("rank 0"))
        session.optimizer.load_state_dict(sd)
    return meta["history"]
