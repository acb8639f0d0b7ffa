"""``softmaxlab report DIR``: write DIR/report.html, one self-contained page about a run."""

from __future__ import annotations

from .evaluate import add_run_data_args, load_run_test


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write DIR/report.html, a self-contained HTML page about a run",
        description="Evaluate the model of a run folder on its test split and write "
                    "report.html into it: configuration, training curves, final metrics, "
                    "confusion matrix, per-class accuracy, calibration, sample predictions and "
                    "the most confident mistakes, with every picture embedded (no external "
                    "files, no scripts). `softmaxlab train` writes it too unless --no-report.",
    )
    p.add_argument("run_dir", metavar="DIR", help="a run folder written by `softmaxlab train`")
    add_run_data_args(p)
    p.set_defaults(handler=run, subparser=p)


def run(args) -> int:
    from .. import runfolder
    from ..report import write_report

    run_dir = runfolder.check_folder(args.run_dir)
    with runfolder.lock(run_dir):
        path = write_report(run_dir, load_run_test(args, run_dir))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
