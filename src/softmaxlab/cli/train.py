"""``softmaxlab train``: train softmax regression and write a run folder.

Its training flags come from ``TrainConfig``'s declarations (one flag per option, its default in
the help); the flags that are not training options are ``OTHER_FLAGS``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import Field, fields
from datetime import datetime, timezone
from pathlib import Path

from .. import runfolder
from ..config import (
    RECIPES,
    TrainConfig,
    check_option,
    describe_recipe,
    option_type,
    rule,
    shown_default,
)
from ..errors import ConfigError, TrainingDiverged
from .common import (
    UsageError,
    add_data_args,
    default_threads,
    load_data,
    positive_int,
    set_threads,
    show_progress,
    tqdm_wrap,
)

# every flag of `train` that is not a training option (those are TrainConfig's fields)
OTHER_FLAGS = ("recipe", "threads", "out", "force", "resume", "no_report", "data_dir", "mirror",
               "offline", "no_progress", "debug")


def _flag_type(f: Field):
    """An argparse type for a number option, checked by the option's own rule."""
    kind = option_type(f)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        try:
            check_option(f, value)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; {rule(f)}") from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_option_flags(p: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """One flag per TrainConfig option, in groups; returns the groups by title."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(TrainConfig):
        m = f.metadata
        group = groups.get(m["group"]) or groups.setdefault(m["group"],
                                                            p.add_argument_group(m["group"]))
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{m['help']} (default: {shown_default(f)})"
        if option_type(f) is bool:
            group.add_argument(flag, action="store_true", default=None, help=help_text)
        elif m["choices"]:
            group.add_argument(flag, choices=m["choices"], default=None, help=help_text)
        else:
            group.add_argument(flag, type=_flag_type(f), default=None, help=help_text)
    return groups


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train softmax regression and write a run folder",
        description="Train softmax regression (the chapter's recipe by default: 10 epochs, batch "
                    "256, lr 0.1, the from-scratch model) and write config.json, history.json, "
                    "model.safetensors, curves.png, predictions.png and report.html into the run "
                    "folder.",
    )
    groups = add_option_flags(p)
    t = groups["training"]
    t.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a preset of the options above; explicit options override it. "
                        + "; ".join(f"{name}: {describe_recipe(name)}" for name in RECIPES)
                        + " (default: chapter)")
    t.add_argument("--threads", type=positive_int, default=None,
                   help=f"CPU threads for torch (default: the cores available, here "
                        f"{default_threads()})")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None,
                   help="the run folder (default: runs/<UTC timestamp>-<impl>)")
    o.add_argument("--force", action="store_true",
                   help="train into --out even if it is not empty, replacing its run files "
                        "(default: off)")
    o.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its last completed epoch up to --epochs "
                        "(its other options are kept; giving a different one is an error) "
                        "(default: a new run)")
    o.add_argument("--no-report", action="store_true",
                   help="skip report.html at the end (default: written)")
    add_data_args(p, dataset=False, group=groups["data"])
    p.set_defaults(handler=run, subparser=p)


def _given(args) -> dict:
    """The training options given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if getattr(args, f.name) is not None}


def _new_config(args) -> TrainConfig:
    return TrainConfig(**{**RECIPES[args.recipe or "chapter"], **_given(args)})


def _resume_config(args, run_cfg: dict) -> TrainConfig:
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


def _new_out(args, impl: str) -> Path:
    """The folder of a new run (not created yet): --out, or runs/<UTC timestamp>-<impl>."""
    if args.out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{impl}"
        i = 1
        while out.exists():
            out, i = Path("runs") / f"{stamp}-{impl}-{i}", i + 1
        return out
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    _check_empty(out, args.force)
    return out


def _check_empty(out: Path, force: bool) -> None:
    """A new run needs an empty --out; with --force, one that holds only a run's files."""
    if not runfolder.contents(out):
        return
    if not force:
        raise UsageError(f"--out {out} is not empty; choose another folder, add --force to "
                         "replace the run in it, or --resume it to continue that run")
    others = runfolder.foreign(out)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise UsageError(f"--out {out} holds files softmaxlab did not write ({shown}); --force "
                         "replaces only a softmaxlab run: choose another folder or move them")


def _epoch_line(row: dict, total: int) -> str:
    val = f"  val acc {row['val_acc']:.4f}" if "val_acc" in row else ""
    return (f"epoch {row['epoch']:>3}/{total}  train loss {row['train_loss']:.4f}  "
            f"train acc {row['train_acc']:.4f}{val}  test acc {row['test_acc']:.4f}  "
            f"({row['seconds']:.2f} s)")


def run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.out or args.force:
            raise UsageError("--resume DIR continues in DIR; do not combine it with --out/--force")
        out = runfolder.check_folder(args.resume)
        with runfolder.lock(out):
            run_cfg = runfolder.read_run_config(out)
            config = _resume_config(args, run_cfg)
            return _train(args, config, out, args.data_dir or run_cfg.get("data_dir"), True)
    config = _new_config(args)  # every option is checked before anything is written
    out = _new_out(args, config.impl)
    return _train(args, config, out, args.data_dir, False)


def _train(args, config: TrainConfig, out: Path, data_dir: str | None, resume: bool) -> int:
    from .. import checkpoint
    from ..runner import Session

    threads = set_threads(args.threads)
    t_start = time.perf_counter()
    train, test = load_data(args, config.dataset, data_dir)
    session = Session(config, train, test)
    with contextlib.ExitStack() as stack:
        if resume:  # (the caller holds the lock)
            history = checkpoint.restore_session(out, session)
            if len(history) >= config.epochs:
                print(f"{out}: already trained for {len(history)} epochs (asked for "
                      f"{config.epochs}); give a larger --epochs to continue")
                return 0
        else:
            stack.enter_context(runfolder.lock(out, create=True))
            _check_empty(out, args.force)  # again, now that no other command can write it
            runfolder.clear(out)
            history = []
        checkpoint.write_config(out, session, data_dir)
        print(f"training {config.impl} softmax regression on {config.dataset} "
              f"({len(session.train)} train / {len(test)} test images, {threads} threads) -> "
              f"{out}")
        history = _fit(args, session, out, history)
        written = _write_pictures(out, session, history, report=not args.no_report)
    train_time = sum(r["seconds"] for r in history)
    if history:
        last = history[-1]
        print(f"done: train loss {last['train_loss']:.4f}, train acc {last['train_acc']:.4f}, "
              f"test acc {last['test_acc']:.4f}; training {train_time:.2f} s, "
              f"wall {time.perf_counter() - t_start:.1f} s")
    print(f"run folder: {out}")
    for path in written:
        print(f"  {path}")
    return 0


def _fit(args, session, out: Path, history: list[dict]) -> list[dict]:
    """Train to the config's epochs, a checkpoint and a line after each; on a stop, say what
    the run folder keeps."""
    from .. import checkpoint

    def on_epoch(h: list[dict]) -> None:
        checkpoint.save_checkpoint(out, session, h)
        print(_epoch_line(h[-1], session.config.epochs), flush=True)

    if not history:
        checkpoint.save_checkpoint(out, session, history)
    try:
        return session.fit(history, callbacks=[on_epoch],
                           wrap=tqdm_wrap(show_progress(args), "train"))
    except KeyboardInterrupt:
        done = len(checkpoint.read_history(out))
        print(f"stopped after epoch {done}; the run folder holds that epoch's checkpoint. "
              f"Continue with: softmaxlab train --resume {out}", file=sys.stderr)
        raise
    except TrainingDiverged as e:
        done = len(checkpoint.read_history(out))
        checkpoint.record_stop(out, {"reason": "diverged", "epoch": e.epoch, "message": str(e)})
        kept = f"the checkpoint of epoch {done}" if done else "its initial weights"
        raise TrainingDiverged(f"{e}. {out} keeps {kept}, the last finite ones", e.epoch) \
            from None


def _write_pictures(out: Path, session, history: list[dict], report: bool) -> list[Path]:
    from ..outputs import write_run_outputs

    written = write_run_outputs(out, session, history)
    if report:
        from ..report import write_report

        written.append(write_report(out, session.test))
    return written
