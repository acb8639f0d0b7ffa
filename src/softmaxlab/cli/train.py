"""``softmaxlab train``: train softmax regression and write a run folder.

Its training flags come from ``TrainConfig``'s declarations (one flag per option, its default in
the help); the flags that are not training options are ``OTHER_FLAGS``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from dataclasses import Field, fields
from datetime import datetime, timezone
from pathlib import Path

from .. import distributed, runfolder
from ..config import (
    RECIPES,
    TrainConfig,
    check_option,
    describe_recipe,
    option_type,
    rule,
    shown_default,
)
from ..distributed import DEFAULT_TIMEOUT, Group
from ..errors import ConfigError, DistributedError, SoftmaxlabError, TrainingDiverged
from ..runner import DEVICES, resolve_device
from .common import (
    OWN_DATA_FLAGS,
    UsageError,
    add_data_args,
    default_threads,
    load_data,
    own_data_given,
    positive_float,
    positive_int,
    set_threads,
    show_progress,
    tqdm_wrap,
)

# every flag of `train` that is not a training option (those are TrainConfig's fields)
OTHER_FLAGS = ("recipe", "threads", "out", "force", "resume", "no_report", "data_dir", "mirror",
               "offline", "no_progress", "debug", "nproc", "dist_timeout", "device",
               *OWN_DATA_FLAGS)


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
    d = p.add_argument_group("processes and devices")
    d.add_argument("--device", choices=DEVICES, default="auto",
                   help="where to train: auto is a CUDA GPU when torch has one, else the CPU; "
                        "the data is moved there once (default: auto)")
    d.add_argument("--nproc", type=positive_int, default=1,
                   help="train data-parallel in N processes on this machine, started through "
                        "torch's launcher (torchrun); under torchrun itself the job's ranks are "
                        "used and this is ignored (default: 1)")
    d.add_argument("--dist-timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="how long a distributed rank waits for the others before the job stops "
                        f"with an error naming the rank (default: {DEFAULT_TIMEOUT:g})")
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
    if args.nproc > 1 and not distributed.requested():
        return _launch(args)
    device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    group = None
    if distributed.requested():
        group = distributed.init(args.dist_timeout, use_cuda=device.type == "cuda")
    try:
        with contextlib.ExitStack() as stack:
            return _run(args, group, device, stack)
    finally:
        distributed.close()


def _run(args, group: Group | None, device, stack: contextlib.ExitStack) -> int:
    """The run's config and folder (rank 0 decides and tells the others), then train."""
    if args.resume:
        if args.out or args.force:
            raise UsageError("--resume DIR continues in DIR; do not combine it with --out/--force")
        out = Path(args.resume)

        def open_run() -> dict:
            stack.enter_context(runfolder.lock(runfolder.check_folder(out)))
            return runfolder.read_run_config(out)

        given = own_data_given(args)
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with --resume (the run "
                             "keeps its data)")
        run_cfg = _on_main(group, open_run)
        config = _resume_config(args, run_cfg)
        _check_shards(out, config, run_cfg, group)
        return _train(args, config, out, args.data_dir or run_cfg.get("data_dir"), group, device,
                      stack, run_cfg.get("data"))
    config = _new_config(args)  # every option is checked before anything is written
    out = Path(_on_main(group, lambda: str(_new_out(args, config.impl))))
    return _train(args, config, out, args.data_dir, group, device, stack)


def _check_shards(out: Path, config: TrainConfig, run_cfg: dict, group: Group | None) -> None:
    """A sharded run resumes only with the processes it was trained with: each one's rows and
    random streams depend on their number."""
    then = run_cfg.get("world_size", 1)
    now = 1 if group is None else group.world_size
    if config.shard and then != now:
        raise ConfigError(f"{out} was trained with --shard in {then} process"
                          f"{'es' if then != 1 else ''}; resume it with {then} (--nproc {then}, "
                          f"or torchrun's processes in all): each process's share of the "
                          f"training rows depends on their number (here {now})")


def _on_main(group: Group | None, work):
    """``work()``'s JSON-able result, computed by rank 0 (or this process) and shared; when it
    fails there, the other ranks stop too."""
    if group is None:
        return work()
    if not group.is_main:
        result = group.broadcast_json()
        if "error" in result:
            raise DistributedError(f"rank {group.rank}: rank 0 stopped the job: {result['error']}")
        return result["value"]
    try:
        value = work()
    except SoftmaxlabError as e:
        group.broadcast_json({"error": str(e)})
        raise
    group.broadcast_json({"value": value})
    return value


def _train(args, config: TrainConfig, out: Path, data_dir: str | None, group: Group | None,
           device, stack: contextlib.ExitStack, run_record: dict | None = None) -> int:
    from .. import checkpoint
    from ..runner import Session

    main = group is None or group.is_main
    say = print if main else _quiet
    threads = set_threads(args.threads, 1 if group is None else group.local_world_size, say)
    t_start = time.perf_counter()
    record = run_record if args.resume else None
    shard = (group.rank, group.world_size) if config.shard and group is not None else None
    train, test, record = load_data(args, config.dataset, data_dir, record, shard)
    session = Session(config, train, test, group=group, device=device)
    if args.resume:
        history = _on_main(group, lambda: checkpoint.restore_session(out, session))
        if group is not None:
            history = distributed.share_state(group, session, history)
        if len(history) >= config.epochs:
            say(f"{out}: already trained for {len(history)} epochs (asked for {config.epochs}); "
                "give a larger --epochs to continue")
            return 0
    else:
        def new_run() -> list:
            stack.enter_context(runfolder.lock(out, create=True))
            _check_empty(out, args.force)  # again, now that no other command can write it
            runfolder.clear(out)
            return []

        history = _on_main(group, new_run)
    if main:
        checkpoint.write_config(out, session, data_dir, record)
        if record and record.get("n_skipped"):
            print(f"note: {record['n_skipped']} image(s) could not be decoded and were skipped "
                  "(listed in config.json; --strict makes this an error)", file=sys.stderr)
    each = "" if group is None else f" each, {group.world_size} processes"
    if shard is not None:
        each += f", sharded: {'/'.join(map(str, session.rows))} training images each"
    say(f"training {config.impl} softmax regression on {config.dataset} "
        f"({session.n_train} train / {len(test)} test images, {threads} "
        f"thread{'s' if threads > 1 else ''}{each}) -> {out}")
    history = _fit(args, session, out, history, main)
    if not main:
        return 0
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


def _quiet(*args, **kwargs) -> None:
    """``print`` for the ranks other than 0, which say nothing."""


def _launch(args) -> int:
    """Run this same command in ``--nproc`` processes through torch's launcher; their exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the ranks say what went wrong themselves; the launcher's own log would repeat it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=args.nproc,
                          run_id=f"softmaxlab-{os.getpid()}", rdzv_backend="c10d",
                          rdzv_endpoint="127.0.0.1:0", max_restarts=0)
    argv = ["-m", "softmaxlab", "train", *_argv_without_nproc(args)]
    try:
        elastic_launch(config, entrypoint=sys.executable)(*argv)
    except ChildFailedError as e:
        return min(f.exitcode for f in e.failures.values() if f.exitcode > 0) or 1
    return 0


def _argv_without_nproc(args) -> list[str]:
    """The command line of ``args`` again (every flag given), without --nproc."""
    from . import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    argv = []
    for action in sub.choices["train"]._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "nproc") or value is None \
                or value is False or value == action.default:
            continue
        argv.append(action.option_strings[-1])
        if not isinstance(action, argparse._StoreTrueAction):
            argv.append(str(value))
    return argv


def _fit(args, session, out: Path, history: list[dict], main: bool = True) -> list[dict]:
    """Train to the config's epochs, a checkpoint and a line after each (rank 0 only); on a stop,
    say what the run folder keeps."""
    from .. import checkpoint

    def on_epoch(h: list[dict]) -> None:
        checkpoint.save_checkpoint(out, session, h)
        print(_epoch_line(h[-1], session.config.epochs), flush=True)

    if not main:
        return session.fit(history)
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
