"""Devices, as the book names them (``cpu()``, ``gpu(i)``, ``num_gpus()``, ``try_gpu``, ...), and
the CPU threads d2l's training loops use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu", "gpu", "num_gpus", "try_all_gpus", "try_gpu"]

# torch's intra-op threads while ``Trainer.fit`` and ``train_ch3`` train (None: torch's setting).
# These chapters' models are tiny (784 x 10): more threads gain little, and on a busy machine they
# spin against the other work (measured here: 5 to 15 times slower epochs with 2 threads).
TRAINING_THREADS: int | None = 1


@contextmanager
def training_threads() -> Iterator[None]:
    """Run the block with at most ``TRAINING_THREADS`` torch threads, then restore the count."""
    n = torch.get_num_threads()
    if TRAINING_THREADS is None or n <= TRAINING_THREADS:
        yield
        return
    torch.set_num_threads(TRAINING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def cpu() -> torch.device:
    """The CPU device."""
    return torch.device("cpu")


def gpu(i=0) -> torch.device:
    """The GPU device ``cuda:i`` (whether or not it exists)."""
    return torch.device(f"cuda:{i}")


def num_gpus() -> int:
    """The number of GPUs torch can use."""
    return torch.cuda.device_count()


def try_gpu(i=0) -> torch.device:
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus() -> list[torch.device]:
    """Every GPU, or ``[cpu()]`` when there is none (d2l-zh's behaviour; d2l-en 1.x returns
    ``[]`` there, which breaks code that trains "on all devices")."""
    return [gpu(i) for i in range(num_gpus())] or [cpu()]
