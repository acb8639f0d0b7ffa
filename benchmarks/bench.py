"""Side-by-side benchmark: softmaxlab vs the peers, every comparison measured in this one run.

(a) the chapter's recipe: ours vs the book's per-sample PIL/ToTensor/DataLoader pipeline
    (benchmarks/d2l_style.py), training passes alone and the whole command;
(b) our per-epoch training pass vs the floor: one full-batch forward + weight-gradient matmul;
(c) scikit-learn LogisticRegression() (lbfgs, C=1, max_iter=100, X/255) vs the training time ours
    needs to reach its test accuracy, and vs `--recipe best`;
(d) peak resident memory of a default `softmaxlab train`, next to `import torch` alone;
(e) prediction throughput on the 10,000 test images.

The machine's speed may drift during the run, so the fast side's repeats (the chapter's recipe
and `--recipe fast`) are spread before, between and after the peer's runs (not bunched before
them), and each training repeat is paired with a floor measurement taken right after it.

Usage: python benchmarks/bench.py [--threads 2] [--repeats 3] [--quick] [--out BENCHMARKS.md]
(`make bench` installs scikit-learn and runs it). Prints one table and writes it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import d2l_style

from softmaxlab.checkpoint import load_trained
from softmaxlab.data import load_dataset
from softmaxlab.runner import Session, TrainConfig


def timed_command(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) of the child and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak if peak > before else -1, r.stdout


def peak_rss_kib(cmd: list[str]) -> int:
    """Peak RSS of one command, in a fresh child so earlier children do not mask it."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip())


def floor_seconds(train, repeats: int = 10) -> float:
    """One full-batch forward + weight-gradient matmul over the training set (float32): the min
    over ``repeats`` and over the two layouts (X W, X^T G) and (W^T X^T, G^T X), whichever BLAS
    does faster on this machine."""
    X = train.to_float().reshape(len(train), -1)
    W, b = torch.randn(X.shape[1], 10) * 0.01, torch.zeros(10)
    G = torch.randn(len(train), 10)
    Wt, bt, Gt = W.t().contiguous(), b.unsqueeze(1), G.t().contiguous()
    layouts = [lambda: (torch.addmm(b, X, W), torch.mm(X.t(), G)),
               lambda: (torch.addmm(bt, Wt, X.t()), torch.mm(Gt, X))]
    best = float("inf")
    for _ in range(repeats):
        for f in layouts:
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
    return best


def train_ours(train, test, config: TrainConfig) -> dict:
    """One training run of ``config``: its history and timings (setup: building the session,
    e.g. fitting --standardize's mean and std)."""
    t0 = time.perf_counter()
    session = Session(config, train, test)
    setup = time.perf_counter() - t0
    h = session.fit()
    return {"history": h, "train_seconds": sum(r["seconds"] for r in h),
            "epoch_seconds": statistics.median(r["seconds"] for r in h), "setup_seconds": setup}


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["train_seconds"])[len(runs) // 2]


def _spread(repeats: int, gaps: int) -> list[int]:
    """How many of ``repeats`` go before, between and after ``gaps`` peer runs (gaps + 1 slots),
    as evenly as they can: 3 repeats around 2 peers -> [1, 1, 1]; around 1 -> [2, 1]."""
    base, extra = divmod(repeats, gaps + 1)
    return [base + (i < extra) for i in range(gaps + 1)]


def time_to_reach(history: list[dict], target: float, setup: float = 0.0
                  ) -> tuple[float | None, int | None]:
    """Setup plus cumulative training seconds until the first epoch whose test_acc >= target."""
    total = setup
    for row in history:
        total += row["seconds"]
        if row["test_acc"] >= target:
            return total, row["epoch"]
    return None, None


def main() -> None:
    p = argparse.ArgumentParser(description="softmaxlab vs its peers, side by side")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every side")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the fast side (median)")
    p.add_argument("--quick", action="store_true",
                   help="skip the slow peers (d2l workers=4 and scikit-learn)")
    p.add_argument("--out", default=str(HERE.parent / "BENCHMARKS.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, str]] = []
    train, test = load_dataset()
    sm = [sys.executable, "-m", "softmaxlab"]

    # (a) the chapter's recipe. This machine's speed drifts over minutes, so our repeats are
    # spread between the peer's runs (before, between, after) instead of bunched before them,
    # and each training repeat is paired with a floor measurement (b) taken right after it.
    worker_counts = (0,) if args.quick else (4, 0)
    slots = _spread(args.repeats, len(worker_counts))
    tmp = Path(tempfile.mkdtemp(prefix="softmaxlab-bench-"))
    cmd_ours = [*sm, "train", "--threads", str(args.threads), "--no-progress"]
    runs, floors, fasts, peers = [], [], [], {}
    for workers, k in zip((*worker_counts, None), slots):
        for _ in range(k):
            runs.append(train_ours(train, test, TrainConfig()))
            floors.append(floor_seconds(train))
            # (c)'s `--recipe fast` repeats, spread out the same way
            fasts.append(train_ours(train, test, TrainConfig(**_recipe("fast"))))
        if workers is not None:
            peers[workers] = d2l_style.run(train.images, train.labels, test.images, test.labels,
                                           workers)
    chapter = _median_run(runs)
    whole_runs: dict[str, list[float]] = {"report": [], "no-report": []}
    whole_peer = {}
    for workers, k in zip((*worker_counts, None), slots):
        for _ in range(k):
            i = len(whole_runs["report"])
            whole_runs["report"].append(
                timed_command([*cmd_ours, "--out", str(tmp / f"run{i}")])[0])
            whole_runs["no-report"].append(
                timed_command([*cmd_ours, "--no-report", "--out", str(tmp / f"nr{i}")])[0])
        if workers is not None:
            wall, _, out = timed_command([sys.executable, str(HERE / "d2l_style.py"),
                                          "--workers", str(workers), "--threads",
                                          str(args.threads)])
            whole_peer[workers] = (wall, json.loads(out.strip().splitlines()[-1]))
    whole_ours = statistics.median(whole_runs["report"])
    whole_ours_noreport = statistics.median(whole_runs["no-report"])
    last = chapter["history"][-1]
    rows.append(("(a) ours: chapter recipe, training passes (10 epochs)",
                 f"{chapter['train_seconds']:.3f} s", f"test acc {last['test_acc']:.4f}"))
    rows.append(("(a) ours: whole `softmaxlab train` command", f"{whole_ours:.2f} s",
                 "curves.png, predictions.png, report.html (a test pass + 2 more figures)"))
    rows.append(("(a) ours: whole `softmaxlab train --no-report`", f"{whole_ours_noreport:.2f} s",
                 "curves.png, predictions.png"))
    for workers, peer in peers.items():
        rows.append((f"(a) d2l-style, num_workers={workers}: training passes",
                     f"{peer['train_seconds']:.2f} s",
                     (f"test acc {peer['test_acc']:.4f}; ratio "
                      f"**{peer['train_seconds'] / chapter['train_seconds']:.0f}x**")))
        wall, res = whole_peer[workers]
        rows.append((f"(a) d2l-style, num_workers={workers}: whole command (no pictures)",
                     f"{wall:.2f} s",
                     (f"test acc {res['test_acc']:.4f}; ratio **{wall / whole_ours:.1f}x** "
                     f"(vs --no-report **{wall / whole_ours_noreport:.1f}x**)")))

    # (b) per-epoch vs the floor, each training repeat against the floor measured right after it
    ratios = [r["epoch_seconds"] / f for r, f in zip(runs, floors)]
    floor = statistics.median(floors)
    rows.append(("(b) floor: full-batch forward + weight-gradient matmul", f"{floor * 1e3:.1f} ms",
                 f"min of 10, after each of our {len(runs)} repeats (median)"))
    rows.append(("(b) ours: one training epoch (median)",
                 f"{chapter['epoch_seconds'] * 1e3:.1f} ms",
                 (f"ratio to floor **{statistics.median(ratios):.2f}x** (median of the "
                  f"{len(ratios)} pairs: {', '.join(f'{r:.2f}' for r in ratios)})")))

    # (c) scikit-learn, and the best recipe
    best = train_ours(train, test, TrainConfig(**_recipe("best")))
    fast = _median_run(fasts)
    best_last = best["history"][-1]
    if not args.quick:
        from sklearn.linear_model import LogisticRegression

        Xtr = train.images.reshape(len(train), -1).numpy() / 255.0
        Xte = test.images.reshape(len(test), -1).numpy() / 255.0
        t0 = time.perf_counter()
        clf = LogisticRegression(max_iter=100).fit(Xtr, train.labels.numpy())
        sk_fit = time.perf_counter() - t0
        sk_acc = float(clf.score(Xte, test.labels.numpy()))
        rows.append(("(c) scikit-learn LogisticRegression() fit", f"{sk_fit:.1f} s",
                     f"test acc {sk_acc:.4f}"))
        for name, run in (("fast", fast), ("best", best)):
            reach, epoch = time_to_reach(run["history"], sk_acc, run["setup_seconds"])
            label = f"(c) ours (`--recipe {name}`): training time to reach scikit-learn's accuracy"
            if reach is None:
                top = max(r["test_acc"] for r in run["history"])
                rows.append((label, "not reached", f"best test acc {top:.4f}"))
            else:
                rows.append((label, f"{reach:.2f} s",
                             (f"epoch {epoch}, setup ({run['setup_seconds']:.2f} s) included; "
                             f"**1/{sk_fit / reach:.0f}** of its fit time")))
    rows.append(("(c) ours: `--recipe fast` training", f"{fast['train_seconds']:.2f} s",
                 f"test acc {fast['history'][-1]['test_acc']:.4f}"))
    rows.append(("(c) ours: `--recipe best` training", f"{best['train_seconds']:.2f} s",
                 f"test acc **{best_last['test_acc']:.4f}**"))

    # (d) peak memory
    rss_train = peak_rss_kib([*cmd_ours, "--out", str(tmp / "rss")])
    rss_torch = peak_rss_kib([sys.executable, "-c", "import torch"])
    rows.append(("(d) peak RSS: default `softmaxlab train`", f"{rss_train / 1024:.0f} MB",
                 "target <= 512 MB"))
    rows.append(("(d) peak RSS: `import torch` alone", f"{rss_torch / 1024:.0f} MB", ""))

    # (e) prediction throughput
    model = load_trained(tmp / "run0")
    X = test.to_float()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.predict_proba(test.to_float()).argmax(1)
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    rows.append(("(e) prediction, 10,000 test images (uint8 -> probabilities)",
                 f"{t * 1e3:.1f} ms", f"{len(X) / t:,.0f} images/s"))

    table = _table(rows)
    print(table)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"torch {torch.__version__}, {args.threads} threads")
    text = (f"# Benchmarks\n\nMachine: {machine}. Date: {time.strftime('%Y-%m-%d')}.\n\n"
            f"Command: `python benchmarks/bench.py --threads {args.threads} --repeats "
            f"{args.repeats}{' --quick' if args.quick else ''}` (or `make bench`).\n\n{table}\n")
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    others = old.find("\n## ")  # the other benchmarks' sections follow this one's: kept
    out.write_text(text + ("" if others < 0 else old[others:]))
    print(f"\nwrote {args.out}")


def _recipe(name: str) -> dict:
    from softmaxlab.config import RECIPES

    return RECIPES[name]


def _table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| measurement | value | notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
