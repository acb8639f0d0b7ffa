"""``softmaxlab losses`` (the picture of L2, L1 and Huber) and ``softmaxlab compare-losses``."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from .common import (
    UsageError,
    add_data_args,
    load_data,
    positive_float,
    positive_int,
    set_threads,
    show_progress,
    tqdm_wrap,
)


def register(sub) -> None:
    p = sub.add_parser(
        "losses", help="draw L2, L1 and Huber losses with their gradients and likelihoods",
        description="Draw the lecture's picture: for L2, L1 and Huber's loss, with the target "
                    "y = 0 and the prediction y' from -3 to 3, the loss (blue), its gradient "
                    "(orange) and the likelihood exp(-l) (green), one panel per loss.",
    )
    p.add_argument("--delta", type=positive_float, default=1.0,
                   help="Huber's threshold: quadratic for |y - y'| <= delta, linear outside "
                        "(default: 1)")
    p.add_argument("--out", metavar="FILE", default="losses.png",
                   help="the PNG (or .svg/.pdf) to write (default: losses.png)")
    p.set_defaults(handler=run_losses, subparser=p)

    p = sub.add_parser(
        "compare-losses", help="train with cross-entropy and with squared loss, compare",
        description="Train the from-scratch softmax regression once per loss (ce: "
                    "cross-entropy, mse: squared loss on one-hot labels) from the same start "
                    "(same seed: same initial weights and shuffles), each at its default "
                    "learning rate, and write curves.png, histories.json and summary.md into "
                    "the output folder.",
    )
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per loss (default: 10)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="minibatch size (default: 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and the shuffles, shared by both losses "
                        "(default: 0)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="the output folder (default: runs/<UTC timestamp>-compare-losses)")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it is not empty, replacing these files")
    add_data_args(p)
    p.set_defaults(handler=run_compare, subparser=p)


def run_losses(args: argparse.Namespace) -> int:
    from .. import plots
    from ..compare import loss_curves

    path = plots.save_figure(plots.plot_loss_curves(loss_curves(delta=args.delta)), args.out)
    print(f"wrote {path} (L2, L1 and Huber with delta {args.delta:g}: loss, gradient, "
          "likelihood)")
    return 0


def _prepare_out(out_arg: str | None, force: bool) -> Path:
    if out_arg is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out, i = Path("runs") / f"{stamp}-compare-losses", 1
        while out.exists():
            out, i = Path("runs") / f"{stamp}-compare-losses-{i}", i + 1
        return out
    out = Path(out_arg)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} is not empty; choose another folder or add --force to "
                         "write into it anyway")
    return out


def run_compare(args: argparse.Namespace) -> int:
    from .. import plots
    from ..compare import compare_losses, loss_configs, summary_markdown
    from ..fsutil import write_json, write_text

    out = _prepare_out(args.out, args.force)
    threads = set_threads(None)
    configs = loss_configs(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                           dataset=args.dataset or "fashion-mnist")
    train, test, _ = load_data(args)
    print(f"comparing losses {', '.join(c.loss for c in configs)} on {configs[0].dataset} "
          f"({len(train)} train / {len(test)} test images, {threads} threads, seed {args.seed}) "
          f"-> {out}")

    def on_epoch(name: str, history: list[dict]) -> None:
        row = history[-1]
        print(f"{name:>4} epoch {row['epoch']:>3}/{args.epochs}  train loss "
              f"{row['train_loss']:.4f}  train acc {row['train_acc']:.4f}  "
              f"test acc {row['test_acc']:.4f}  ({row['seconds']:.2f} s)", flush=True)

    runs = compare_losses(train, test, configs, on_epoch=on_epoch,
                          wrap=tqdm_wrap(show_progress(args), "train"))
    out.mkdir(parents=True, exist_ok=True)
    fig = plots.plot_loss_comparison({r.loss: r.history for r in runs},
                                     {r.loss: r.lr for r in runs})
    summary = summary_markdown(runs)
    written = [
        plots.save_figure(fig, out / "curves.png"),
        write_json(out / "histories.json", {r.loss: r.to_dict() for r in runs}),
        write_text(out / "summary.md", summary),
    ]
    print()
    print(summary, end="")
    print(f"\noutput folder: {out}")
    for path in written:
        print(f"  {path}")
    return 0
