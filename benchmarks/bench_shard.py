"""Memory per process of data-parallel training, replicated vs ``--shard``, in one run.

Writes a generated dataset of N 28x28 images (uncompressed IDX, or gzipped with ``--gz``) and
trains two epochs on it with ``softmaxlab train --nproc P`` twice, with every process holding the
whole training set and with ``--shard``; prints the peak resident memory of the largest process
(``ru_maxrss`` of the waited-for children: the ranks and the launcher) and the faster epoch's
time.

Usage: python benchmarks/bench_shard.py [--n 400000] [--nproc 2] [--gz] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from softmaxlab.data.idx import write_idx

NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CHUNK = 50_000  # images generated at a time


def generate(folder: Path, n: int, n_test: int, gz: bool, seed: int = 0) -> Path:
    """Images of blurred class blobs with noise (labels follow from the pixels), as IDX files."""
    suffix = ".gz" if gz else ""
    if all((folder / f"{name}{suffix}").is_file() for pair in NAMES.values() for name in pair):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.integers(4, 24, size=(10, 2))
    yy, xx = np.mgrid[:28, :28]
    for split, size in (("train", n), ("test", n_test)):
        images = np.empty((size, 28, 28), np.uint8)
        labels = rng.integers(0, 10, size).astype(np.uint8)
        for start in range(0, size, CHUNK):
            y = labels[start:start + CHUNK]
            c = centres[y] + rng.integers(-3, 4, size=(len(y), 2))
            d2 = (yy[None] - c[:, :1, None]) ** 2 + (xx[None] - c[:, 1:, None]) ** 2
            blob = 200 * np.exp(-d2 / 18.0) + rng.normal(0, 30, d2.shape)
            images[start:start + CHUNK] = blob.clip(0, 255).astype(np.uint8)
        write_idx(folder / f"{NAMES[split][0]}{suffix}", images, compress=gz)
        write_idx(folder / f"{NAMES[split][1]}{suffix}", labels, compress=gz)
    return folder


def run(folder: Path, nproc: int, shard: bool, threads: int) -> dict:
    """Two epochs in a fresh child (so that its peak memory is its own)."""
    out = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    code = (
        "import resource, subprocess, sys, json\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': r.returncode, 'peak_kb': peak, 'err': r.stderr[-2000:]}))\n"
    )
    argv = [sys.executable, "-m", "softmaxlab", "train", "--dataset", f"idx:{folder}", "--out",
            str(out), "--epochs", "2", "--nproc", str(nproc), "--threads", str(threads),
            "--no-report", "--no-progress", "--force", *(["--shard"] if shard else [])]
    t0 = time.perf_counter()
    result = json.loads(subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                                       text=True, check=True).stdout)
    wall = time.perf_counter() - t0
    if result["rc"] != 0:
        raise SystemExit(f"training failed:\n{result['err']}")
    history = json.loads((out / "history.json").read_text())
    return {"peak_mb": result["peak_kb"] / 1024, "epoch_s": min(r["seconds"] for r in history),
            "wall_s": wall, "test_acc": history[-1]["test_acc"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400_000, help="training images (default: 400000)")
    p.add_argument("--n-test", type=int, default=10_000, help="test images (default: 10000)")
    p.add_argument("--nproc", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--threads", type=int, default=1, help="threads per process (default: 1)")
    p.add_argument("--gz", action="store_true", help="gzipped IDX files (default: uncompressed)")
    p.add_argument("--data", default=None,
                   help="folder for the generated files (default: a folder in the temp dir)")
    args = p.parse_args()
    folder = Path(args.data or Path(tempfile.gettempdir()) /
                  f"softmaxlab-shard-{args.n}{'-gz' if args.gz else ''}")
    generate(folder, args.n, args.n_test, args.gz)
    data_mb = args.n * 784 / 2**20
    print(f"{args.n:,} training images ({data_mb:.0f} MB as uint8), "
          f"{'gzipped' if args.gz else 'uncompressed'} IDX, {args.nproc} processes, "
          f"load average {os.getloadavg()[0]:.2f}")
    rows = {}
    for shard in (False, True, False, True):  # interleaved, twice: the better of each
        r = run(folder, args.nproc, shard, args.threads)
        best = rows.get(shard)
        rows[shard] = r if best is None or r["wall_s"] < best["wall_s"] else best
        print(f"  {'sharded' if shard else 'replicated'}: peak RSS {r['peak_mb']:.0f} MB, "
              f"epoch {r['epoch_s']:.2f} s, wall {r['wall_s']:.1f} s, test acc "
              f"{r['test_acc']:.4f}", flush=True)
    ratio = rows[True]["peak_mb"] / rows[False]["peak_mb"]
    print(f"largest process: replicated {rows[False]['peak_mb']:.0f} MB, sharded "
          f"{rows[True]['peak_mb']:.0f} MB ({ratio:.2f}x); epoch {rows[False]['epoch_s']:.2f} s "
          f"vs {rows[True]['epoch_s']:.2f} s")


if __name__ == "__main__":
    main()
