"""``softmaxlab evaluate DIR``: test metrics, calibration and figures of a run, into DIR/eval/."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_data_args, load_data


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a run on the test split and write DIR/eval/",
        description="Evaluate the model of a run folder on its dataset's test split: accuracy, "
                    "per-class accuracy, confusion matrix, expected calibration error (15 bins "
                    "on the top probability). Writes eval/metrics.json, "
                    "eval/confusion_matrix.png, eval/reliability.png and eval/mistakes.png "
                    "(the 16 most confidently wrong test images) into the run folder.",
    )
    p.add_argument("run_dir", metavar="DIR", help="a run folder written by `softmaxlab train`")
    add_run_data_args(p)
    p.set_defaults(handler=run, subparser=p)


def add_run_data_args(p: argparse.ArgumentParser) -> None:
    """The data options of a command that works on a run folder (the dataset is the run's)."""
    add_data_args(p, dataset=False, own_data=False)
    p.epilog = ("The dataset is the run's. Without --data-dir, the folder the run was trained "
                "from (data_dir in its config.json) is used if it was given, else the usual "
                "lookup.")


def load_run_test(args, run_dir: Path):
    """The test split of the dataset the run in ``run_dir`` was trained on (an ImageDataset)."""
    from ..checkpoint import read_run_config

    cfg = read_run_config(run_dir)
    _, test, _ = load_data(args, cfg["config"]["dataset"], cfg.get("data_dir"), cfg.get("data"))
    return test


def format_metrics(ev) -> list[str]:
    """The lines printed for an Evaluation: accuracy, ECE, the note, the per-class table."""
    correct = int(ev.confusion.diagonal().sum())
    lines = [(f"test accuracy {ev.accuracy:.4f} ({correct}/{ev.n})   "
              f"ECE ({len(ev.bins.count)} bins) {ev.ece:.4f}")]
    if ev.note:
        lines.append(f"note: {ev.note}")
    width = max(len("class"), *(len(name) for name in ev.class_names))
    lines.append(f"{'class':<{width}}  accuracy      n  most often mistaken for")
    for row in ev.per_class_rows():
        acc = "     -" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        other = "-" if row["confused_with"] is None else \
            f"{row['confused_with']} ({row['confused_share']:.1%})"
        lines.append(f"{row['class']:<{width}}  {acc:>8}  {row['n']:>5}  {other}")
    return lines


def run(args) -> int:
    from .. import runfolder
    from ..checkpoint import load_trained
    from ..evaluation import evaluate, write_evaluation

    run_dir = runfolder.check_folder(args.run_dir)
    with runfolder.lock(run_dir):
        model = load_trained(run_dir)
        test = load_run_test(args, run_dir)
        ev = evaluate(model, test)
        written = write_evaluation(run_dir, ev)
    c = model.config
    print(f"{run_dir}: {c.impl} softmax regression, loss {c.loss}, on {ev.dataset} test "
          f"({ev.n} images)")
    for line in format_metrics(ev):
        print(line)
    print("wrote:")
    for path in written:
        print(f"  {path}")
    return 0
