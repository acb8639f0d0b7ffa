"""Two commits' `softmaxlab train`, interleaved on the same machine at the same moment.

    python benchmarks/ab_train.py --old REV [--new REV] [--pairs 5] [-- extra train options]

Each commit's source is exported (``git archive``) into a temporary folder and run with this
Python (``PYTHONPATH`` pointing at its ``src``), alternating old and new, the order flipping every
pair. Prints each pair's training time (the sum of the epochs' training passes, as the command
records it in history.json) and the wall time of the whole command, and the medians of new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def export(rev: str, dest: Path) -> Path:
    """The commit's tree in ``dest``; returns its ``src`` folder."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True,
                             capture_output=True).stdout
    tar = dest / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest / "src"


def train_once(src: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(training seconds, wall seconds) of one `softmaxlab train` run of the code in ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "softmaxlab", "train", "--out", str(out),
                        "--no-progress", *extra], env=env, capture_output=True, text=True,
                       check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{src}: softmaxlab train failed ({r.returncode}):\n{r.stderr}")
    history = json.loads((out / "history.json").read_text())
    return sum(row["seconds"] for row in history), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True, help="the commit to compare against")
    p.add_argument("--new", default="HEAD", help="the commit measured (default: HEAD)")
    p.add_argument("--pairs", type=int, default=5, help="old/new pairs (default: 5)")
    p.add_argument("extra", nargs="*", help="options for `softmaxlab train` (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        srcs = {"old": export(args.old, root / "old"), "new": export(args.new, root / "new")}
        rows = []
        for i in range(args.pairs):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            pair = {name: train_once(srcs[name], root / f"run-{name}-{i}", args.extra)
                    for name in order}
            rows.append(pair)
            (to, wo), (tn, wn) = pair["old"], pair["new"]
            print(f"pair {i + 1} ({order[0]} first): training old {to:.3f} s new {tn:.3f} s "
                  f"(new/old {tn / to:.3f}); wall old {wo:.2f} s new {wn:.2f} s "
                  f"(new/old {wn / wo:.3f})", flush=True)
    train_ratio = statistics.median(r["new"][0] / r["old"][0] for r in rows)
    wall_ratio = statistics.median(r["new"][1] / r["old"][1] for r in rows)
    print(f"median new/old over {len(rows)} pairs: training {train_ratio:.3f}, "
          f"whole command {wall_ratio:.3f}")


if __name__ == "__main__":
    main()
