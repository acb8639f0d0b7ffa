"""The validation-only search behind `--recipe best` and `--recipe fast` (README "Recipes").

Every candidate trains on the training split minus a held-out validation split (`--val-split`,
10,000 images by default) for each seed; the table ranks candidates by their mean final
validation accuracy and gives the training seconds. The test set is never used to choose: its
accuracy is recorded only so that the README can report it.

    python benchmarks/recipe_search.py [--seeds 3] [--threads 1] [--out results.jsonl]

`best` is the top candidate (a tie within the seeds' spread keeps the incumbent), `fast` the
quickest candidate within 0.001 of it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics

import torch

from softmaxlab.data import load_dataset
from softmaxlab.runner import Session, TrainConfig


def candidates() -> list[dict]:
    base = {"momentum": 0.9, "lr_schedule": "cosine"}
    found = [
        {**base, "epochs": 20, "batch_size": 256, "lr": 0.1, "weight_decay": 1e-4},  # best
        {**base, "epochs": 5, "batch_size": 256, "lr": 0.2, "weight_decay": 1e-4},  # old fast
    ]
    for epochs, batch, lr, wd in itertools.product([4, 5, 6, 8, 12, 20], [512, 1024],
                                                   [0.02, 0.04, 0.08, 0.16], [1e-4, 1e-3]):
        found.append({**base, "standardize": True, "epochs": epochs, "batch_size": batch,
                      "lr": lr, "weight_decay": wd})
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds per candidate (0, 1, ...)")
    p.add_argument("--val-split", type=int, default=10000, help="held-out training images")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None, help="also write one JSON line per run here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load_dataset()
    results = []
    with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext() as sink:
        for options in candidates():
            runs = []
            for seed in range(args.seeds):
                config = TrainConfig(val_split=args.val_split, seed=seed, **options)
                history = Session(config, train, test).fit()
                run = {**options, "seed": seed, "val_acc": history[-1]["val_acc"],
                       "test_acc": history[-1]["test_acc"],
                       "seconds": sum(r["seconds"] for r in history)}
                runs.append(run)
                if sink:
                    sink.write(json.dumps(run) + "\n")
                    sink.flush()
            results.append((statistics.mean(r["val_acc"] for r in runs),
                             statistics.mean(r["seconds"] for r in runs), options))
    results.sort(key=lambda r: -r[0])
    best = results[0][0]
    print("| mean val acc | training s | options |\n|---|---|---|")
    for val, seconds, options in results:
        mark = " (within 0.001 of the best)" if best - val <= 0.001 else ""
        print(f"| {val:.4f} | {seconds:.2f} | {json.dumps(options)}{mark} |")


if __name__ == "__main__":
    main()
