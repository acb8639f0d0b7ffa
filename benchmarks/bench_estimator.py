"""Side-by-side benchmark of the estimator: SoftmaxRegression vs scikit-learn, in this one run.

(f) Fashion-MNIST, 60,000 training images given as ``X / 255`` (float64, as scikit-learn users
    have them) and as uint8: fit time and test accuracy of SoftmaxRegression (default = auto, and
    each solver) against LogisticRegression() and SGDClassifier(loss="log_loss");
(g) scikit-learn's 8x8 digits: 5-fold cross_val_score of make_pipeline(StandardScaler(), clf)
    for the same estimators;
(h) prediction throughput on the 10,000 test images (uint8 -> probabilities): the exported ONNX
    model in onnxruntime against the same model in torch.

The machine is shared and its speed drifts, so every measurement takes turns with its peers:
each round runs every contender once, in order, and the table gives the median over the rounds
(ratios from the medians). The peers' slow fits run ``--peer-repeats`` times, ours ``--repeats``
times, spread across the same rounds.

Usage: python benchmarks/bench_estimator.py [--threads N] [--repeats 3] [--peer-repeats 1]
[--quick] [--out BENCHMARKS.md]. Prints the section; with --out it replaces this benchmark's
section of that file (or appends it), leaving the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SECTION = "## The estimator: SoftmaxRegression vs scikit-learn"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def take_turns(contenders: dict[str, Callable[[], object]], repeats: dict[str, int]
               ) -> dict[str, tuple[list[float], list[object]]]:
    """Run the contenders in rounds, each at most its repeats: (times, results) of each."""
    results: dict[str, tuple[list[float], list[object]]] = {name: ([], []) for name in contenders}
    for r in range(max(repeats.values())):
        for name, fn in contenders.items():
            if r < repeats[name]:
                t, out = timed(fn)
                results[name][0].append(t)
                results[name][1].append(out)
                print(f"  {name}: {t:.3f} s", flush=True)
    return results


def fashion(args, rows: list[tuple[str, str, str]]) -> None:
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    from softmaxlab import SoftmaxRegression
    from softmaxlab.data import load_dataset

    train, test = load_dataset()
    U_tr = train.images.reshape(len(train), -1).numpy()
    U_te = test.images.reshape(len(test), -1).numpy()
    F_tr, F_te = U_tr / 255.0, U_te / 255.0  # float64
    y_tr, y_te = train.labels.numpy(), test.labels.numpy()
    if args.quick:
        F_tr, U_tr, y_tr = F_tr[:10000], U_tr[:10000], y_tr[:10000]

    def fit(make, X):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the peers' ConvergenceWarnings
                return make().fit(X, y_tr)
        return run

    contenders = {
        "SoftmaxRegression() on X / 255": (fit(SoftmaxRegression, F_tr), F_te),
        "SoftmaxRegression() on uint8 X": (fit(SoftmaxRegression, U_tr), U_te),
        "SoftmaxRegression(solver=\"lbfgs\") on X / 255 (float64)":
            (fit(lambda: SoftmaxRegression(solver="lbfgs"), F_tr), F_te),
        "SoftmaxRegression(solver=\"lbfgs\", dtype=\"float32\") on X / 255":
            (fit(lambda: SoftmaxRegression(solver="lbfgs", dtype="float32"), F_tr), F_te),
        "LogisticRegression() on X / 255": (fit(LogisticRegression, F_tr), F_te),
        "SGDClassifier(loss=\"log_loss\") on X / 255":
            (fit(lambda: SGDClassifier(loss="log_loss"), F_tr), F_te),
    }
    slow = {name for name in contenders if "lbfgs" in name or not name.startswith("Softmax")}
    repeats = {name: args.peer_repeats if name in slow else args.repeats for name in contenders}
    print("(f) Fashion-MNIST fits, in rounds:")
    results = take_turns({k: v[0] for k, v in contenders.items()}, repeats)
    lr_name = "LogisticRegression() on X / 255"
    lr_time = statistics.median(results[lr_name][0])
    lr_acc = statistics.median(c.score(contenders[lr_name][1], y_te) for c in results[lr_name][1])
    for name, (times, fits) in results.items():
        t = statistics.median(times)
        accs = [c.score(contenders[name][1], y_te) for c in fits]
        acc = statistics.median(accs)
        spread = f" ({min(accs):.4f}-{max(accs):.4f})" if max(accs) > min(accs) else ""
        clf = fits[-1]
        solver = f"solver {clf.solver_}, {clf.n_iter_} iterations; " if hasattr(clf, "solver_") \
            else ""
        ratio = "" if name == lr_name else \
            f"; **{lr_time / t:.1f}x** LogisticRegression's speed, accuracy {acc - lr_acc:+.4f}"
        rows.append((f"(f) {name}: fit", f"{t:.2f} s",
                     f"test acc {acc:.4f}{spread}; {solver}medians of {len(times)}{ratio}"))


def digits(args, rows: list[tuple[str, str, str]]) -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from softmaxlab import SoftmaxRegression

    X, y = load_digits(return_X_y=True)
    makers = {
        "SoftmaxRegression()": SoftmaxRegression,
        "SoftmaxRegression(solver=\"sgd\")": lambda: SoftmaxRegression(solver="sgd",
                                                                       random_state=0),
        "LogisticRegression()": LogisticRegression,
        "SGDClassifier(loss=\"log_loss\")": lambda: SGDClassifier(loss="log_loss",
                                                                  random_state=0),
    }

    def cv(make):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cross_val_score(make_pipeline(StandardScaler(), make()), X, y, cv=5)
        return run

    print("(g) digits, 5-fold pipelines, in rounds:")
    n = args.repeats * 3
    results = take_turns({k: cv(m) for k, m in makers.items()}, dict.fromkeys(makers, n))
    lr_time = statistics.median(results["LogisticRegression()"][0])
    lr_acc = float(np.mean(results["LogisticRegression()"][1][-1]))
    for name, (times, scores) in results.items():
        t = statistics.median(times)
        acc = statistics.median(float(np.mean(s)) for s in scores)
        ratio = "" if name == "LogisticRegression()" else \
            f"; **{lr_time / t:.2f}x** LogisticRegression's speed, accuracy {acc - lr_acc:+.4f}"
        label = f"(g) digits: `cross_val_score(make_pipeline(StandardScaler(), {name}), cv=5)`"
        rows.append((label, f"{t * 1e3:.0f} ms",
                     f"mean accuracy {acc:.4f}; medians of {len(times)}{ratio}"))


def prediction(args, rows: list[tuple[str, str, str]]) -> None:
    import onnxruntime

    from softmaxlab import SoftmaxRegression
    from softmaxlab.data import load_dataset

    train, test = load_dataset()
    U_tr = train.images.reshape(len(train), -1).numpy()
    U_te = test.images.reshape(len(test), -1).numpy()
    clf = SoftmaxRegression(random_state=0).fit(U_tr, train.labels.numpy())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        clf.to_onnx(path)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = clf._model()  # the estimator's SoftmaxModel: torch without scikit-learn's checks
    X_t = torch.from_numpy(U_te)

    contenders = {
        "onnxruntime": lambda: session.run(["label", "probabilities"], {"input": U_te}),
        "torch (SoftmaxModel)": lambda: model.predict_proba(X_t),
        "torch (SoftmaxRegression.predict_proba)": lambda: clf.predict_proba(U_te),
    }
    print("(h) prediction on the test set, in rounds:")
    results = take_turns(contenders, dict.fromkeys(contenders, args.repeats * 5))
    ort_time = statistics.median(results["onnxruntime"][0])
    for name, (times, _) in results.items():
        t = statistics.median(times)
        ratio = "" if name == "onnxruntime" else f"; onnxruntime is **{t / ort_time:.2f}x** as fast"
        rows.append((f"(h) prediction, 10,000 test images (uint8 -> probabilities): {name}",
                     f"{t * 1e3:.1f} ms",
                     f"{len(U_te) / t:,.0f} images/s; median of {len(times)}{ratio}"))


def section(args, rows: list[tuple[str, str, str]], load: tuple[float, float]) -> str:
    import onnxruntime
    import sklearn

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, torch {torch.__version__} ({args.threads} threads), "
               f"scikit-learn {sklearn.__version__}, onnxruntime {onnxruntime.__version__}")
    table = "\n".join(["| measurement | value | notes |", "|---|---|---|",
                       *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    command = (f"python benchmarks/bench_estimator.py --threads {args.threads} --repeats "
               f"{args.repeats} --peer-repeats {args.peer_repeats}"
               f"{' --quick' if args.quick else ''}")
    return (f"{SECTION}\n\nMachine: {machine}. Date: {time.strftime('%Y-%m-%d')}.\n\n"
            f"Command: `{command}`. Every contender takes turns with the others in rounds; "
            "times and accuracies are medians over the rounds (each of our fits draws a new "
            "seed: random_state=None). The machine is shared: its load average (1 min) "
            f"was {load[0]:.2f} at the start and {load[1]:.2f} at the end.\n\n"
            f"{table}\n")


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of ``path`` (up to the next ``## `` heading), or append."""
    old = path.read_text() if path.exists() else ""
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if end < 0 else old[end:])
    path.write_text(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads (default: torch's, the cores available)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of our fits (default: 3)")
    p.add_argument("--peer-repeats", type=int, default=1,
                   help="rounds of the slow fits: the peers' and L-BFGS on Fashion-MNIST "
                        "(default: 1)")
    p.add_argument("--quick", action="store_true",
                   help="10,000 training images instead of 60,000 (default: all)")
    p.add_argument("--out", default=None,
                   help="write the section into this Markdown file (default: print only)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, str]] = []
    load_start = os.getloadavg()[0]
    fashion(args, rows)
    digits(args, rows)
    prediction(args, rows)
    text = section(args, rows, (load_start, os.getloadavg()[0]))
    print()
    print(text)
    if args.out:
        write_section(Path(args.out), text)
        print(f"wrote the section into {args.out}")


if __name__ == "__main__":
    main()
