"""``softmaxlab train``: train softmax regression and write a run folder."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .common import (
    UsageError,
    add_data_args,
    default_threads,
    load_data,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    set_threads,
    show_progress,
    tqdm_wrap,
)

# The options that define a run (stored in config.json; fixed once a run exists). Their defaults
# live in TrainConfig and are shown in the help below.
RUN_OPTIONS = ("impl", "loss", "epochs", "batch_size", "lr", "seed", "dataset", "optimizer",
               "momentum", "weight_decay", "lr_schedule", "standardize", "val_split", "augment",
               "lbfgs_iters")

# `--recipe best`: the best linear model on raw pixels we found, chosen by mean validation accuracy
# over 3 seeds with `--val-split 10000` (never on the test set; README "Recipes" has the search).
# Explicit options override it.
RECIPES = {
    "chapter": {},
    "best": {"impl": "scratch", "optimizer": "sgd", "epochs": 20, "batch_size": 256, "lr": 0.1,
             "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine"},
    # the quickest candidate within 0.001 of best's validation accuracy (mean over 3 seeds)
    "fast": {"impl": "scratch", "optimizer": "sgd", "epochs": 5, "batch_size": 1024, "lr": 0.08,
             "momentum": 0.9, "weight_decay": 1e-3, "lr_schedule": "cosine",
             "standardize": True},
}


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train softmax regression and write a run folder",
        description="Train softmax regression (the chapter's recipe by default: 10 epochs, batch "
                    "256, lr 0.1, the from-scratch model) and write config.json, history.json, "
                    "model.safetensors, curves.png, predictions.png and report.html into the run "
                    "folder.",
    )
    m = p.add_argument_group("model and loss")
    m.add_argument("--impl", choices=["scratch", "concise"], default=None,
                   help="scratch: the chapter's W, b with gradients written out; concise: "
                        "nn.Sequential(Flatten, Linear) with autograd (default: scratch)")
    m.add_argument("--loss", choices=["ce", "mse"], default=None,
                   help="ce: cross-entropy of softmax(o), default lr 0.1; mse: squared loss "
                        "½‖o − onehot(y)‖² on the raw scores o, summed over classes, averaged "
                        "over the batch, predicting argmax o, default lr 0.01 (default: ce)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=nonneg_int, default=None,
                   help="epochs in all; with --optimizer lbfgs the number of outer L-BFGS steps; "
                        "with --resume the total to reach (default: 10)")
    t.add_argument("--batch-size", type=positive_int, default=None, help="minibatch size "
                   "(default: 256)")
    t.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: the loss's own: 0.1 for ce, 0.01 for mse)")
    t.add_argument("--seed", type=int, default=None,
                   help="seed of the initial weights, the shuffles and the validation split "
                        "(default: 0)")
    t.add_argument("--optimizer", choices=["sgd", "lbfgs"], default=None,
                   help="sgd: minibatch SGD; lbfgs: full-batch L-BFGS, one history row per outer "
                        "step (default: sgd)")
    t.add_argument("--momentum", type=nonneg_float, default=None, help="SGD momentum "
                   "(default: 0)")
    t.add_argument("--weight-decay", type=nonneg_float, default=None,
                   help="L2 penalty: weight_decay/2 ‖W‖² added to the loss (default: 0)")
    t.add_argument("--lr-schedule", choices=["constant", "cosine", "step"], default=None,
                   help="per-epoch learning rate: constant, cosine to 0, or step (x0.1 at 1/2 "
                        "and 3/4 of the epochs) (default: constant)")
    t.add_argument("--standardize", action="store_true", default=None,
                   help="standardise each pixel with the training split's mean/std (saved with "
                        "the model, applied wherever it is used) (default: off)")
    t.add_argument("--augment", action="store_true", default=None,
                   help="shift training images by up to 1 pixel (default: off)")
    t.add_argument("--val-split", type=nonneg_int, default=None,
                   help="hold out N training images for validation; history gets val_acc "
                        "(default: 0)")
    t.add_argument("--lbfgs-iters", type=positive_int, default=None,
                   help="inner L-BFGS iterations per outer step (default: 20)")
    t.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a preset of the options above; explicit options override it. best: "
                        "20 epochs of SGD with momentum 0.9, lr 0.1 on a cosine schedule, weight "
                        "decay 1e-4; fast: 5 epochs of batch 1024 on standardised pixels, momentum "
                        "0.9, lr 0.08 on a cosine schedule, weight decay 1e-3 (default: chapter, "
                        "i.e. no preset)")
    t.add_argument("--threads", type=positive_int, default=None,
                   help=f"CPU threads for torch (default: the cores available, here "
                        f"{default_threads()})")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None,
                   help="the run folder (default: runs/<UTC timestamp>-<impl>)")
    o.add_argument("--force", action="store_true",
                   help="train into --out even if it is not empty, replacing its run files")
    o.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its last completed epoch up to --epochs "
                        "(its other options are kept; giving a different one is an error)")
    o.add_argument("--no-report", action="store_true", help="skip report.html at the end")
    add_data_args(p)
    p.set_defaults(handler=run, subparser=p)


def _given(args) -> dict:
    return {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k) is not None}


def _resolve_config(args):
    from ..runner import TrainConfig

    options = dict(RECIPES[args.recipe or "chapter"])
    options.update(_given(args))
    return TrainConfig(**options)


def _resume_config(args, run_cfg: dict):
    from ..runner import TrainConfig

    saved = TrainConfig.from_dict(run_cfg["config"]).to_dict()
    for key, value in _given(args).items():
        if key != "epochs" and saved.get(key) != value:
            raise UsageError(f"--{key.replace('_', '-')} {value} differs from the run's "
                             f"{saved.get(key)!r}; a resumed run keeps its options "
                             "(only --epochs may change)")
    if args.recipe:
        raise UsageError("--recipe cannot be combined with --resume (the run keeps its options)")
    if args.epochs is not None:
        saved["epochs"] = args.epochs
    return TrainConfig.from_dict(saved)


def _prepare_out(args, impl: str) -> Path:
    if args.out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{impl}"
        i = 1
        while out.exists():
            out, i = Path("runs") / f"{stamp}-{impl}-{i}", i + 1
    else:
        out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"--out {out} is not empty; choose another folder, add --force to train "
                         "into it anyway, or --resume it to continue that run")
    return out


def run(args: argparse.Namespace) -> int:
    from .. import checkpoint
    from ..runner import Session

    if args.resume:
        if args.out or args.force:
            raise UsageError("--resume DIR continues in DIR; do not combine it with --out/--force")
        out = Path(args.resume)
        run_cfg = checkpoint.read_run_config(out)
        config = _resume_config(args, run_cfg)
        data_dir = args.data_dir or run_cfg.get("data_dir")
    else:
        config = _resolve_config(args)
        out = _prepare_out(args, config.impl)
        data_dir = args.data_dir
    threads = set_threads(args.threads)
    args.data_dir = data_dir
    t_start = time.perf_counter()
    train, test = load_data(args, config.dataset)
    session = Session(config, train, test)
    history: list[dict] = []
    if args.resume:
        history = checkpoint.restore_session(out, session)
        if len(history) >= config.epochs:
            print(f"{out}: already trained for {len(history)} epochs (asked for {config.epochs}); "
                  "give a larger --epochs to continue")
            return 0
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.write_config(out, session, data_dir)
    print(f"training {config.impl} softmax regression on {config.dataset} "
          f"({len(session.train)} train / {len(test)} test images, {threads} threads) -> {out}")
    n_total = config.epochs

    def on_epoch(h: list[dict]) -> None:
        checkpoint.save_checkpoint(out, session, h)
        row = h[-1]
        val = f"  val acc {row['val_acc']:.4f}" if "val_acc" in row else ""
        print(f"epoch {row['epoch']:>3}/{n_total}  train loss {row['train_loss']:.4f}  "
              f"train acc {row['train_acc']:.4f}{val}  test acc {row['test_acc']:.4f}  "
              f"({row['seconds']:.2f} s)", flush=True)

    if not history:
        checkpoint.save_checkpoint(out, session, history)
    history = session.fit(history, callbacks=[on_epoch],
                          wrap=tqdm_wrap(show_progress(args), "train"))
    from ..outputs import write_run_outputs

    written = write_run_outputs(out, session, history, report=not args.no_report)
    train_time = sum(r["seconds"] for r in history)
    last = history[-1] if history else None
    if last:
        print(f"done: train loss {last['train_loss']:.4f}, train acc {last['train_acc']:.4f}, "
              f"test acc {last['test_acc']:.4f}; training {train_time:.2f} s, "
              f"wall {time.perf_counter() - t_start:.1f} s")
    print(f"run folder: {out}")
    for path in written:
        print(f"  {path}")
    sys.stdout.flush()
    return 0
