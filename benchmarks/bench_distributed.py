"""Data-parallel training measured: time per epoch and per step for 1, 2 and 4 processes, and the
latency of one all-reduce of the gradient (7,850 float32: 31 KB) on loopback (gloo).

    python benchmarks/bench_distributed.py [--epochs 3] [--procs 1 2 4] [--reduces 2000]

Each process count trains the chapter's recipe on Fashion-MNIST (`softmaxlab train --nproc N`);
the epoch time is the median of the epochs' training passes (history.json). The all-reduce runs in
two processes started here, each timing `--reduces` all-reduces after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PARAMETERS = 784 * 10 + 10


def epoch_seconds(procs: int, epochs: int, out: Path) -> float:
    r = subprocess.run([sys.executable, "-m", "softmaxlab", "train", "--nproc", str(procs),
                        "--epochs", str(epochs), "--out", str(out), "--no-report",
                        "--no-progress"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"--nproc {procs} failed:\n{r.stderr}")
    history = json.loads((out / "history.json").read_text())
    return statistics.median(row["seconds"] for row in history)


def _reducer(rank: int, port: int, n: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    t = torch.ones(PARAMETERS)
    for _ in range(200):  # warm-up
        dist.all_reduce(t)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        queue.put(statistics.median(times))
    dist.destroy_process_group()


def allreduce_seconds(n: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_reducer, args=(rank, port, n, queue)) for rank in (0, 1)]
    for w in workers:
        w.start()
    seconds = queue.get(timeout=300)
    for w in workers:
        w.join()
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs per process count (default: 3)")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4],
                   help="process counts (default: 1 2 4)")
    p.add_argument("--reduces", type=int, default=2000, help="all-reduces timed (default: 2000)")
    args = p.parse_args()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    steps = -(-60000 // 256)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in args.procs:
            seconds = epoch_seconds(procs, args.epochs, Path(tmp) / f"run{procs}")
            rows.append((procs, seconds))
            print(f"{procs} process(es): epoch {seconds:.3f} s, step {1e3 * seconds / steps:.2f} ms"
                  f" ({steps} steps of 256)", flush=True)
    latency = allreduce_seconds(args.reduces)
    print(f"all-reduce of {PARAMETERS} float32 ({4 * PARAMETERS / 1024:.0f} KiB), 2 processes on "
          f"loopback: median {1e6 * latency:.0f} µs over {args.reduces}")
    base = rows[0][1]
    for procs, seconds in rows[1:]:
        print(f"{procs} processes / {rows[0][0]}: {seconds / base:.2f}x the epoch time")


if __name__ == "__main__":
    main()
