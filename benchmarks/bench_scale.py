"""Benchmark at EMNIST scale: softmaxlab's epoch and memory against the matmul floor and scikit-learn.

The data is generated, of EMNIST-byclass's shape: 697,932 training and 116,323 test images of
28x28 uint8 in 62 classes. Each image is a pen stroke (a polyline of 2-5 segments, blurred and
centred, mostly black like EMNIST's); its label is drawn from a fixed random linear teacher,
``softmax(scale * (x / 255) @ T + c)`` with T smooth random fields (one per class), c balancing
the classes and ``scale`` set so that the teacher's own accuracy (the best any classifier, linear
or not, can reach on average) is about 0.80. Accuracy thus means something: 0.80 is the ceiling,
1/62 chance.

Per training-set size (the first 60,000, 200,000 and all 697,932 images; the same 116,323 test
images) and each in its own child process:

- the floor: the least one epoch of gradient descent must compute, measured in chunks of the
  uint8 set (never a float copy of all of it): per chunk uint8 -> float32 / 255, the forward
  product X W (+ b) and the backward product X^T dS, 62 classes; the fastest of a few chunk sizes
  and both layouts (X W, X^T dS) and (W^T X^T, dS^T X); before ours and after each round of
  ours;
- ours: ``softmaxlab train --dataset idx:DIR`` with the chapter recipe (the default) and with
  ``--recipe fast``, ``--rounds`` times each: the per-epoch 'seconds' of history.json (the
  training pass alone), the test accuracy, the peak RSS of the whole command (``os.wait4``'s
  ru_maxrss) and its wall time.

The target (an epoch <= 1.5x the floor) compares the median epoch of all runs with the median
of the floor's measurements: on a shared machine the same epoch varies by 1.5x from one minute
to the next, so single figures mislead; the medians of both sides, measured in turns over the
same minutes, are the typical epoch against the typical floor. The fastest of each (the minimum,
as ``timeit`` takes it) is reported beside them; ours has more samples than the floor, so its
minimum is the more optimistic one.

And scikit-learn on the same data, in children of their own (peak RSS, a time cap):

- ``SGDClassifier(loss="log_loss")`` on all 697,932 images through ``partial_fit`` in chunks of
  float32 ``x / 255`` (the whole set as float32 would be 2.2 GB), the chunks in a new order each
  epoch, epochs until ``--sgd-budget`` seconds are spent;
- ``LogisticRegression()`` (lbfgs, max_iter=100) on the first ``--logreg-n`` images as float32
  ``x / 255``, killed after ``--logreg-limit`` seconds.

Usage: python benchmarks/bench_scale.py [--threads 2] [--rounds 3] [--data DIR] [--quick]
[--out BENCHMARKS.md] (or ``make bench-scale``). ``--quick``: 30,000 / 5,000 generated images,
sizes 10,000 and 30,000, small caps (a smoke test). ``--profile chapter|fast``: instead, one
epoch on the largest set under torch's profiler (printed). The data is generated once into
``--data`` (uncompressed IDX files in the standard names, chunk by chunk, from ``--seed``) and
reused while its parameters are the same. Prints the section; with --out it replaces this
benchmark's section of that file (or appends it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTION = "## At EMNIST scale: epoch time and memory from 60k to 700k images"

N_TRAIN, N_TEST, CLASSES, SIDE = 697_932, 116_323, 62, 28  # EMNIST-byclass's shape
SIZES = (60_000, 200_000, N_TRAIN)  # training-set sizes measured
TEACHER_ACC = 0.80  # the teacher's own expected accuracy: the ceiling of any classifier
GEN_CHUNK = 8192  # images generated at a time (the data depends on it: it is in the parameters)
GEN_VERSION = 1  # bump when the generator changes, so cached data is made again
META = "bench_scale.json"  # the parameters and facts of a generated folder, written last
NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
# chunk sizes the floor tries: the fastest is the floor; 256 and 1024, the chapter's and the fast
# recipe's batch sizes, show what the batch size alone costs
FLOOR_CHUNKS = (256, 1024, 4096, 16384)
FLOOR_REPEATS = 2  # passes per (chunk size, layout) in each floor measurement
SK_CHUNK = 20_000  # rows per float32 chunk fed to scikit-learn


# --------------------------------------------------------------------- the generated data


def draw_images(rng: np.random.Generator, m: int, max_seg: int = 5, per_seg: int = 16
                ) -> np.ndarray:
    """m pen strokes as uint8 images (m, 28, 28): a polyline of 2..max_seg segments turning by up
    to ~125 degrees each, centred and fitted to 16-20 px, drawn with bilinear dots and blurred."""
    H = W = SIDE
    nseg = rng.integers(2, max_seg + 1, m)
    pts = np.zeros((m, max_seg + 1, 2), np.float64)  # (m, points, (y, x))
    ang = rng.uniform(0, 2 * np.pi, m)
    for s in range(max_seg):
        ang = ang + rng.uniform(-2.2, 2.2, m)
        step = np.stack([np.sin(ang), np.cos(ang)], 1) * rng.uniform(5, 12, m)[:, None]
        pts[:, s + 1] = pts[:, s] + step
    used = np.arange(max_seg + 1)[None, :] <= nseg[:, None]  # (m, points)
    lo = np.where(used[..., None], pts, np.inf).min(1)
    hi = np.where(used[..., None], pts, -np.inf).max(1)
    fit = np.minimum(1.0, rng.uniform(16, 20, m) / np.maximum((hi - lo).max(1), 1e-3))
    centre = 13.5 + rng.uniform(-1.5, 1.5, (m, 2))
    pts = (pts - ((lo + hi) / 2)[:, None]) * fit[:, None, None] + centre[:, None]
    pts = np.clip(pts, 0, H - 1.001).astype(np.float32)
    # per_seg dots along each segment, weight 0 on the unused segments
    t = (np.arange(per_seg, dtype=np.float32) / per_seg)[None, None, :, None]
    dots = pts[:, :-1, None] + t * (pts[:, 1:] - pts[:, :-1])[:, :, None]  # (m, S, P, 2)
    weight = np.broadcast_to((np.arange(max_seg)[None, :] < nseg[:, None])[:, :, None],
                             dots.shape[:3]).ravel().astype(np.float32)
    base = np.broadcast_to(np.arange(m)[:, None, None] * (H * W), dots.shape[:3]).ravel()
    y, x = dots[..., 0].ravel(), dots[..., 1].ravel()
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    canvas = np.zeros(m * H * W, np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            canvas += np.bincount(base + (y0 + dy) * W + (x0 + dx), weights=weight * wy * wx,
                                  minlength=m * H * W)
    from scipy.ndimage import gaussian_filter

    canvas = gaussian_filter(canvas.reshape(m, H, W).astype(np.float32), sigma=(0, 1.0, 1.0))
    thickness = rng.uniform(1.2, 2.5, m).astype(np.float32)[:, None, None]
    ink = rng.uniform(0.8, 1.0, m).astype(np.float32)[:, None, None]
    img = np.clip(canvas * thickness, 0, 1) * ink * 255
    img[img < 12] = 0  # a black background, as scanned characters have
    return img.round().astype(np.uint8)


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def make_teacher(seed: int) -> dict:
    """The labelling rule: T (C, 784) smooth unit-norm random fields, the scale and the biases
    c (C,) fitted on a calibration sample so that classes are balanced and the expected accuracy
    of argmax (the Bayes rule) is TEACHER_ACC."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    T = gaussian_filter(rng.standard_normal((CLASSES, SIDE, SIDE)), sigma=(0, 2.0, 2.0))
    T = T.reshape(CLASSES, -1)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    sample = draw_images(np.random.default_rng(np.random.SeedSequence([seed, 98])), 2 * GEN_CHUNK)
    Z = (sample.reshape(len(sample), -1) / 255.0) @ T.T  # (n, C)

    def balanced(scale: float) -> tuple[np.ndarray, float]:
        c = np.zeros(CLASSES)
        for _ in range(30):  # each class's mean probability -> 1/C
            p = _softmax(scale * Z + c)
            c -= np.log(p.mean(0) * CLASSES)
        return c, float(p.max(1).mean())

    lo, hi = 1.0, 200.0
    for _ in range(14):  # geometric bisection on the scale: expected accuracy is increasing in it
        scale = (lo * hi) ** 0.5
        c, acc = balanced(scale)
        lo, hi = (scale, hi) if acc < TEACHER_ACC else (lo, scale)
    return {"T": T, "scale": scale, "c": c, "expected_acc": acc}


def label_images(images: np.ndarray, teacher: dict, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(sampled labels, the teacher's argmax), uint8 (m,) each: labels ~ softmax(logits)."""
    z = teacher["scale"] * (images.reshape(len(images), -1) / 255.0) @ teacher["T"].T + teacher["c"]
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, z.shape)))
    return (z + gumbel).argmax(1).astype(np.uint8), z.argmax(1).astype(np.uint8)


def _idx_header(shape: tuple[int, ...]) -> bytes:
    """The IDX header of uint8 data of ``shape``: two zero bytes, 0x08, ndim, big-endian sizes."""
    return struct.pack(">HBB", 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def _write_split(folder: Path, split: str, n: int, seed: int, teacher: dict) -> dict:
    """Generate split ``split`` (n examples) chunk by chunk into its two IDX files (as .part
    files, renamed by the caller); returns its facts (the teacher's accuracy, class counts)."""
    prefix = "train" if split == "train" else "test"
    code = {"train": 0, "test": 1}[split]
    images_path = folder / (NAMES[f"{prefix}_images"] + ".part")
    labels_path = folder / (NAMES[f"{prefix}_labels"] + ".part")
    counts = np.zeros(CLASSES, np.int64)
    agree = zeros = 0
    with open(images_path, "wb") as fi, open(labels_path, "wb") as fl:
        fi.write(_idx_header((n, SIDE, SIDE)))
        fl.write(_idx_header((n,)))
        for k, start in enumerate(range(0, n, GEN_CHUNK)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, code, k]))
            images = draw_images(rng, min(GEN_CHUNK, n - start))
            labels, best = label_images(images, teacher, rng)
            fi.write(images.tobytes())
            fl.write(labels.tobytes())
            counts += np.bincount(labels, minlength=CLASSES)
            agree += int((labels == best).sum())
            zeros += int((images == 0).sum())
            if k % 20 == 0:
                print(f"  {split}: {start + len(images):,} / {n:,}", flush=True)
    return {"teacher_acc": agree / n, "class_counts": [int(counts.min()), int(counts.max())],
            "zero_pixels": zeros / (n * SIDE * SIDE)}


def ensure_data(root: Path, n_train: int, n_test: int, seed: int) -> tuple[Path, dict]:
    """The generated folder under ``root`` for these parameters: reused when its META says the
    same parameters, else generated (chunk by chunk: little memory). Returns (folder, META)."""
    params = {"version": GEN_VERSION, "n_train": n_train, "n_test": n_test, "classes": CLASSES,
              "side": SIDE, "seed": seed, "teacher_acc_target": TEACHER_ACC,
              "chunk": GEN_CHUNK}
    folder = root / f"emnist-shape-{n_train}x{n_test}-seed{seed}"
    meta_path = folder / META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params and all((folder / f).is_file() for f in NAMES.values()):
            return folder, meta
    print(f"generating {n_train:,} + {n_test:,} images into {folder} ...", flush=True)
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    teacher = make_teacher(seed)
    facts = {split: _write_split(folder, split, n, seed, teacher)
             for split, n in (("train", n_train), ("test", n_test))}
    for name in NAMES.values():
        os.replace(folder / (name + ".part"), folder / name)
    meta = {"params": params, "teacher_scale": teacher["scale"],
            "teacher_expected_acc": teacher["expected_acc"], **facts,
            "seconds": time.perf_counter() - t0}
    meta_path.write_text(json.dumps(meta, indent=1))
    print(f"generated in {meta['seconds']:.0f} s", flush=True)
    return folder, meta


def prefix_folder(full: Path, n: int, n_full: int) -> Path:
    """A folder whose training set is the first ``n`` examples of ``full``'s (the test files are
    hard links to full's, or copies); ``full`` itself when n is all of them."""
    if n >= n_full:
        return full
    folder = full.parent / f"{full.name}-first{n}"
    done = folder / META
    facts = {"prefix_of": json.loads((full / META).read_text())["params"], "n_train": n}
    if done.is_file() and json.loads(done.read_text()) == facts:
        return folder
    done.unlink(missing_ok=True)
    folder.mkdir(exist_ok=True)
    for role, row in (("train_images", SIDE * SIDE), ("train_labels", 1)):
        shape = (n, SIDE, SIDE) if role == "train_images" else (n,)
        src, dst = full / NAMES[role], folder / (NAMES[role] + ".part")
        with open(src, "rb") as fi, open(dst, "wb") as fo:
            fi.seek(len(_idx_header(shape)))
            fo.write(_idx_header(shape))
            left = n * row
            while left:
                block = fi.read(min(left, 64 << 20))
                fo.write(block)
                left -= len(block)
        os.replace(dst, folder / NAMES[role])
    for role in ("test_images", "test_labels"):
        dst = folder / NAMES[role]
        dst.unlink(missing_ok=True)
        try:
            os.link(full / NAMES[role], dst)
        except OSError:
            shutil.copyfile(full / NAMES[role], dst)
    done.write_text(json.dumps(facts))
    return folder


def _load(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 28, 28), int64 labels (N,)) of a generated folder, with softmaxlab's
    IDX reader."""
    from softmaxlab.data.idx import read_idx

    prefix = "train" if split == "train" else "test"
    images = read_idx(folder / NAMES[f"{prefix}_images"], ndim=3, dtype="uint8")
    labels = read_idx(folder / NAMES[f"{prefix}_labels"], ndim=1, dtype="uint8")
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------- child processes


def run_child(cmd: list[str], limit: float | None = None) -> dict:
    """Run ``cmd``; its wall time, peak RSS (MiB, ru_maxrss of this child alone, from os.wait4),
    exit code, stdout, and whether it was killed at ``limit`` seconds."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        killed = False
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG if limit else 0)
            if pid:
                break
            if time.perf_counter() - t0 > limit:
                p.kill()  # our own child, by its id
                killed = True
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "code": p.returncode,
                  "killed": killed, "stdout": out.read(), "stderr": err.read()}
    if result["code"] != 0 and not killed:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result['code']}):\n{result['stderr'][-3000:]}")
    return result


def child(kind: str, **kwargs) -> list[str]:
    """The command running ``child_<kind>(**kwargs)`` in a new process of this script."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(kwargs)]


def child_floor(folder: str, threads: int) -> dict:
    """The floor of one epoch over the training set, measured in chunks (see the docstring)."""
    import torch

    torch.set_num_threads(threads)
    images, _ = _load(Path(folder), "train")
    U = torch.from_numpy(images).view(len(images), -1)  # (N, D) uint8: no float copy of it all
    n, d = U.shape
    g = torch.Generator().manual_seed(0)
    W = torch.randn(d, CLASSES, generator=g) * 0.01
    b = torch.zeros(CLASSES)
    Wt, bt = W.t().contiguous(), b.unsqueeze(1)
    biggest = max(FLOOR_CHUNKS)
    X_buf = torch.empty(biggest, d)
    dS = torch.randn(biggest, CLASSES, generator=g)  # stands for softmax - onehot
    dSt = dS.t().contiguous()

    def epoch(chunk: int, layout: int) -> float:
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            X = torch.div(U[i:i + k], 255.0, out=X_buf[:k])  # uint8 -> float32 in [0, 1]
            if layout == 0:
                torch.addmm(b, X, W)  # (k, C)
                torch.mm(X.t(), dS[:k])  # (D, C)
            else:
                torch.addmm(bt, Wt, X.t())  # (C, k)
                torch.mm(dSt[:, :k], X)  # (C, D)
        return time.perf_counter() - t0

    best: dict[int, tuple[float, int]] = {}  # chunk -> (seconds, layout)
    for _ in range(FLOOR_REPEATS):
        for chunk in FLOOR_CHUNKS:
            for layout in (0, 1):
                best[chunk] = min(best.get(chunk, (float("inf"), 0)), (epoch(chunk, layout), layout))
    chunk = min(best, key=lambda c: best[c][0])
    return {"seconds": best[chunk][0], "chunk": chunk, "layout": ["X W", "W^T X^T"][best[chunk][1]],
            "by_chunk": {str(c): t for c, (t, _) in best.items()}}


def child_sgd(folder: str, threads: int, budget: float, seed: int) -> dict:
    """SGDClassifier(loss="log_loss") through partial_fit on float32 chunks, epochs until
    ``budget`` seconds; its test accuracy (predicted chunk by chunk)."""
    from sklearn.linear_model import SGDClassifier

    images, labels = _load(Path(folder), "train")
    X_te, y_te = _load(Path(folder), "test")
    n = len(images)
    flat = images.reshape(n, -1)
    clf = SGDClassifier(loss="log_loss", n_jobs=threads, random_state=seed)
    classes = np.arange(CLASSES)
    rng = np.random.default_rng(seed)
    starts = np.arange(0, n, SK_CHUNK)
    epochs, t0, epoch_times = 0, time.perf_counter(), []
    while time.perf_counter() - t0 < budget:
        e0 = time.perf_counter()
        for s in rng.permutation(starts):
            X = flat[s:s + SK_CHUNK].astype(np.float32) / np.float32(255)
            clf.partial_fit(X, labels[s:s + SK_CHUNK], classes=classes)
        epoch_times.append(time.perf_counter() - e0)
        epochs += 1
    fit = time.perf_counter() - t0
    return {"fit_seconds": fit, "epochs": epochs, "epoch_seconds": epoch_times,
            "test_acc": _sk_accuracy(clf, X_te, y_te)}


def child_logreg(folder: str, threads: int, n: int) -> dict:
    """LogisticRegression() (lbfgs, max_iter=100) on the first n training images, float32."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    images, labels = _load(Path(folder), "train")
    X_te, y_te = _load(Path(folder), "test")
    X = images[:n].reshape(n, -1).astype(np.float32) / np.float32(255)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf = LogisticRegression(max_iter=100).fit(X, labels[:n])
        fit = time.perf_counter() - t0
        acc = _sk_accuracy(clf, X_te, y_te)
    return {"fit_seconds": fit, "n_iter": int(np.max(clf.n_iter_)), "test_acc": acc}


def _sk_accuracy(clf, images: np.ndarray, labels: np.ndarray) -> float:
    flat = images.reshape(len(images), -1)
    correct = 0
    for s in range(0, len(flat), SK_CHUNK):
        X = flat[s:s + SK_CHUNK].astype(np.float32) / np.float32(255)
        correct += int((clf.predict(X) == labels[s:s + SK_CHUNK]).sum())
    return correct / len(flat)


def profile_epoch(folder: Path, recipe: str, threads: int) -> None:
    """Where one epoch of ``recipe`` goes on ``folder``'s training set: Session.train_one's
    second epoch (the first warms up) under torch's profiler, its ops by self time, and the
    Python-side rest (the epoch's wall time less the ops')."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from softmaxlab.config import RECIPES
    from softmaxlab.data import load_data_spec
    from softmaxlab.runner import Session, TrainConfig

    torch.set_num_threads(threads)
    train, test, _ = load_data_spec(f"idx:{folder}")
    session = Session(TrainConfig(**RECIPES[recipe]), train, test)
    session.train_one(0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        session.train_one(1)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    ops = sum(e.self_cpu_time_total for e in events) / 1e6
    print(f"--recipe {recipe}, {len(train):,} images: epoch {wall:.3f} s under the profiler, "
          f"{ops:.3f} s in torch ops (self times), {wall - ops:.3f} s elsewhere (Python, "
          "allocation)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))


CHILDREN = {"floor": child_floor, "sgd": child_sgd, "logreg": child_logreg}


# --------------------------------------------------------------------- ours


def run_ours(folder: Path, recipe: str, threads: int, out: Path) -> dict:
    """``softmaxlab train --dataset idx:FOLDER --recipe RECIPE`` in a child: the median (and min)
    epoch seconds of its history.json, its last test accuracy, peak RSS and wall time."""
    cmd = [sys.executable, "-m", "softmaxlab", "train", "--dataset", f"idx:{folder}",
           "--recipe", recipe, "--threads", str(threads), "--no-progress", "--out", str(out)]
    r = run_child(cmd)
    history = json.loads((out / "history.json").read_text())
    seconds = [row["seconds"] for row in history]
    return {"epoch": statistics.median(seconds), "epoch_min": min(seconds), "seconds": seconds,
            "epoch_max": max(seconds), "train_seconds": sum(seconds), "epochs": len(seconds),
            "test_acc": history[-1]["test_acc"], "rss_mb": r["rss_mb"], "wall": r["wall"]}


def _best_round(runs: list[dict]) -> dict:
    """Of one recipe's rounds, the one with the fastest median epoch (the machine is shared: a
    slower round met other work), with the largest peak RSS of them all, and over all rounds
    the fastest epoch and the median epoch."""
    best = min(runs, key=lambda r: r["epoch"])
    every = [t for r in runs for t in r["seconds"]]
    return {**best, "rss_mb": max(r["rss_mb"] for r in runs), "rounds": len(runs),
            "fastest": min(every), "median": statistics.median(every), "all_epochs": len(every)}


# --------------------------------------------------------------------- the report


def _batch_size(recipe: str) -> int:
    from softmaxlab.config import RECIPES, TrainConfig

    return TrainConfig(**RECIPES[recipe]).batch_size


def _mb(x: float) -> str:
    return f"{x:,.0f} MB"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _rows(args, sizes, results, sk, meta) -> list[tuple[str, str, str]]:
    """The main table: the data, ours and the floor at the largest size, scikit-learn."""
    p, big = meta["params"], sizes[-1]
    r = results[big]
    floor = r["floor"]
    low, high = meta["train"]["class_counts"]
    rows = [("data", f"{p['n_train']:,} / {p['n_test']:,}",
             (f"generated train / test images, 28x28 uint8, {CLASSES} classes (seed {p['seed']}), "
              f"{meta['train']['zero_pixels']:.0%} of pixels black, {low:,}-{high:,} training "
              f"images per class; the teacher's own test accuracy "
              f"**{meta['test']['teacher_acc']:.4f}** is the ceiling (chance 1/{CLASSES})"))]
    for recipe in ("chapter", "fast"):
        o = r[recipe]
        ratio = o["median"] / floor["median"]
        rows.append((f"ours (`--recipe {recipe}`), {big:,} images: one epoch (median)",
                     f"{o['median']:.2f} s",
                     (f"**{ratio:.2f}x** the floor's median, {floor['median']:.2f} s (target "
                      f"<= 1.5x: {_met(ratio <= 1.5)}); the median of {o['all_epochs']} epochs "
                      f"in {o['rounds']} runs, and of {floor['runs']} floor measurements; the "
                      f"fastest: {o['fastest']:.2f} s against {floor['seconds']:.2f} s "
                      f"({o['fastest'] / floor['seconds']:.2f}x); the faster run's test acc "
                      f"{o['test_acc']:.4f} after {o['epochs']} epochs "
                      f"({o['train_seconds']:.1f} s of training)")))
        rows.append((f"ours (`--recipe {recipe}`), {big:,} images: peak RSS", _mb(o["rss_mb"]),
                     (f"the whole `softmaxlab train` command (target <= 1.5 GB = 1,536 MB: "
                      f"{_met(o['rss_mb'] <= 1536)}; the larger of {o['rounds']} runs); its wall "
                      f"time {o['wall']:.1f} s")))
    rows.append((f"floor, {big:,} images: one epoch (the fastest)", f"{floor['seconds']:.2f} s",
                 (f"uint8 -> float32, X W + b, X^T dS over chunks of {floor['chunk']:,} rows "
                  f"({floor['layout']} layout the faster); its process's peak RSS "
                  f"{_mb(floor['rss_mb'])} (torch, the uint8 training set, one chunk)")))
    by_chunk = floor["by_chunk"]
    batches = {recipe: _batch_size(recipe) for recipe in ("chapter", "fast")}
    rows.append((f"floor, {big:,} images, computed in the recipes' batch sizes",
                 " / ".join(f"{by_chunk[str(k)]:.2f} s" for k in batches.values()),
                 "the same products over chunks of " +
                 " / ".join(f"{k}" for k in batches.values()) + " rows (the chapter's / the fast "
                 "recipe's batch size): what the small products alone cost; ours is " +
                 " / ".join(f"**{r[recipe]['fastest'] / by_chunk[str(k)]:.2f}x** these (fastest "
                            "against fastest)"
                            for recipe, k in batches.items())))
    s = sk["sgd"]
    name = f"scikit-learn `SGDClassifier(loss=\"log_loss\", n_jobs={args.threads})`"
    if s.get("killed"):
        rows.append((f"{name}, {big:,} images", "killed", "its process outlived its cap"))
    else:
        per_epoch = statistics.median(s["epoch_seconds"])
        ours = r["chapter"]
        epochs = f"{s['epochs']} epoch" + ("s" if s["epochs"] > 1 else "")
        rows.append((f"{name}, {big:,} images: {epochs}", f"{s['fit_seconds']:.1f} s",
                     (f"partial_fit on float32 chunks of {SK_CHUNK:,} rows, epochs until "
                      f"{args.sgd_budget:.0f} s (the one running then finishes); {per_epoch:.1f} s "
                      f"per epoch, **{per_epoch / ours['median']:.0f}x** our chapter epoch; test acc "
                      f"{s['test_acc']:.4f} (ours: {ours['test_acc']:.4f} in "
                      f"{ours['train_seconds']:.0f} s); peak RSS {_mb(s['rss_mb'])}")))
    s, n = sk["logreg"], args.logreg_n
    name = f"scikit-learn `LogisticRegression()`, the first {n:,} images"
    ours = results.get(n, {}).get("fast")
    vs = (f"; ours (`--recipe fast`) on the same images: test acc {ours['test_acc']:.4f} in "
          f"{ours['train_seconds']:.1f} s of training") if ours else ""
    if s.get("killed"):
        rows.append((name, f"killed at {args.logreg_limit:.0f} s", f"no result{vs}"))
    else:
        speed = (f", **1/{s['fit_seconds'] / ours['train_seconds']:.0f}** of its fit time"
                 if ours else "")
        rows.append((name, f"{s['fit_seconds']:.1f} s",
                     (f"lbfgs, max_iter=100 ({s['n_iter']} used), float32, in a process killed "
                      f"after {args.logreg_limit:.0f} s (it finished before); test acc "
                      f"{s['test_acc']:.4f}{vs}{speed}; peak RSS {_mb(s['rss_mb'])}")))
    return rows


def _growth(sizes, results) -> list[str]:
    """The growth table: one row per size, then the growth from the smallest to the largest."""
    lines = [("| train images | floor epoch (median) | chapter epoch, median (x floor) | "
              "fast epoch, median (x floor) | "
              "peak RSS chapter | peak RSS fast | floor process RSS | test acc chapter / fast |"),
             "|" + "---|" * 8]
    for n in sizes:
        r = results[n]
        f, c, q = r["floor"]["median"], r["chapter"], r["fast"]
        lines.append(f"| {n:,} | {f:.3f} s | {c['median']:.3f} s ({c['median'] / f:.2f}x) | "
                     f"{q['median']:.3f} s ({q['median'] / f:.2f}x) | {_mb(c['rss_mb'])} | "
                     f"{_mb(q['rss_mb'])} | {_mb(r['floor']['rss_mb'])} | "
                     f"{c['test_acc']:.4f} / {q['test_acc']:.4f} |")
    a, b = results[sizes[0]], results[sizes[-1]]

    def x(key: str, field: str) -> str:
        return f"x{b[key][field] / a[key][field]:.2f}"

    def plus(key: str) -> str:
        return f"{x(key, 'rss_mb')} (+{_mb(b[key]['rss_mb'] - a[key]['rss_mb'])})"

    lines.append(f"| x{sizes[-1] / sizes[0]:.2f} ({sizes[0]:,} -> {sizes[-1]:,}) | "
                 f"{x('floor', 'median')} | {x('chapter', 'median')} | {x('fast', 'median')} | "
                 f"{plus('chapter')} | {plus('fast')} | {plus('floor')} | |")
    return lines


def code_version() -> str:
    """The softmaxlab measured: its commit, and whether src/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*cmd: str) -> str:  # "" when git or the repository is missing
        return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True,
                              check=False).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return commit + (" with uncommitted changes in src/" if git("status", "--porcelain", "src")
                     else "")


def section(args, sizes, results, sk, meta, load, command, version) -> str:
    import sklearn
    import torch

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, torch {torch.__version__} ({args.threads} threads), "
               f"scikit-learn {sklearn.__version__}; softmaxlab at {version}")
    table = "\n".join(["| measurement | value | notes |", "|---|---|---|",
                       *(f"| {a} | {b} | {c} |" for a, b, c in _rows(args, sizes, results, sk,
                                                                       meta))])
    a, b = results[sizes[0]], results[sizes[-1]]
    per_image = {k: (b[k]["rss_mb"] - a[k]["rss_mb"]) * 2**20 / (sizes[-1] - sizes[0])
                 for k in ("chapter", "fast", "floor")}
    return (f"{SECTION}\n\nMachine: {machine}. Date: {time.strftime('%Y-%m-%d')}.\n\n"
            f"Command: `{command}` (or `make bench-scale`). The data is generated with "
            "EMNIST-byclass's shape: pen strokes labelled by a fixed random linear teacher with "
            "softmax noise (the script's docstring says how). Every measurement runs in a process "
            "of its own. Ours is `softmaxlab train --dataset idx:DIR --recipe R --threads "
            f"{args.threads} --no-progress`, as users run it: its epochs are history.json's "
            "'seconds' (the training pass alone), its peak RSS that of the whole command, "
            f"report included; {args.rounds} runs of each recipe at each size. The floor (the "
            "least an epoch of gradient descent computes) is measured before ours and after "
            "each round. Epochs and floors are compared by their medians over all runs (on this "
            "shared virtual machine the same epoch takes from 1.1 to 1.6 s from one minute to "
            "the next: the medians of both, measured in turns, are the typical epoch against "
            "the typical floor); the fastest of each is given beside them. The test set is the "
            f"same {meta['params']['n_test']:,} images at every size. The load average (1 min) "
            f"was {load[0]:.2f} at the start and {load[1]:.2f} at the end.\n\n{table}\n\n"
            "How epoch time and memory grow with the training set (the fast recipe "
            "standardises each batch, in its epoch time; the chapter's does not):\n\n"
            + "\n".join(_growth(sizes, results)) +
            f"\n\nPeak RSS grows by {per_image['chapter']:,.0f} bytes per training image with the "
            f"chapter recipe, {per_image['fast']:,.0f} with the fast one and "
            f"{per_image['floor']:,.0f} in the floor's process, against {SIDE * SIDE} bytes of "
            "pixels.\n")


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


def _default_data() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "softmaxlab" / "bench_scale"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads of every side")
    p.add_argument("--data", type=Path, default=_default_data(),
                   help="cache folder of the generated data (reused while its parameters match)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs of ours per size and recipe, a floor after each (the medians are "
                        "over the epochs of all runs and over all floors)")
    p.add_argument("--sgd-budget", type=float, default=300.0,
                   help="seconds of SGDClassifier epochs (the epoch at the cap finishes)")
    p.add_argument("--logreg-n", type=int, default=60_000,
                   help="training images LogisticRegression gets (the first ones)")
    p.add_argument("--logreg-limit", type=float, default=900.0,
                   help="seconds after which LogisticRegression's process is killed")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: 30,000 / 5,000 images, sizes 10,000 and 30,000, small caps")
    p.add_argument("--out", type=Path, default=None,
                   help="write the section into this Markdown file (default: print only)")
    p.add_argument("--profile", choices=("chapter", "fast"), default=None,
                   help="instead of the benchmark: profile one epoch of this recipe on the "
                        "largest training set (printed, not written)")
    p.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](**json.loads(args.child[1]))))
        return
    if args.quick:
        n_train, n_test, sizes = 30_000, 5_000, (10_000, 30_000)
        args.sgd_budget, args.logreg_n = min(args.sgd_budget, 5.0), min(args.logreg_n, 10_000)
        args.logreg_limit = min(args.logreg_limit, 120.0)
    else:
        n_train, n_test, sizes = N_TRAIN, N_TEST, SIZES
    command = "python benchmarks/bench_scale.py --threads {} --rounds {}{}".format(
        args.threads, args.rounds, " --quick" if args.quick else "")
    load_start, version = os.getloadavg()[0], code_version()
    full, meta = ensure_data(args.data, n_train, n_test, args.seed)
    if args.profile:
        profile_epoch(full, args.profile, args.threads)
        return
    folders = {n: prefix_folder(full, n, n_train) for n in sizes}

    def floor(n: int) -> dict:
        r = run_child(child("floor", folder=str(folders[n]), threads=args.threads))
        f = {**json.loads(r["stdout"].strip().splitlines()[-1]), "rss_mb": r["rss_mb"]}
        print(f"  floor {f['seconds']:.3f} s", flush=True)
        return f

    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="softmaxlab-bench-scale-") as tmp:
        for n in sizes:
            print(f"{n:,} training images:", flush=True)
            floors = [floor(n)]
            runs: dict[str, list[dict]] = {"chapter": [], "fast": []}
            for k in range(args.rounds):  # the floor after each round: ours sits between two
                for recipe, done in runs.items():
                    done.append(run_ours(folders[n], recipe, args.threads,
                                         Path(tmp) / f"{recipe}-{n}-{k}"))
                    print(f"  ours ({recipe}): epoch {done[-1]['epoch']:.3f} s, test acc "
                          f"{done[-1]['test_acc']:.4f}, peak RSS {done[-1]['rss_mb']:.0f} MB",
                          flush=True)
                floors.append(floor(n))
            results[n] = {recipe: _best_round(done) for recipe, done in runs.items()}
            results[n]["floor"] = {
                **min(floors, key=lambda f: f["seconds"]),
                "median": statistics.median(f["seconds"] for f in floors), "runs": len(floors),
                "rss_mb": max(f["rss_mb"] for f in floors),
                "by_chunk": {c: min(f["by_chunk"][c] for f in floors) for c in floors[0]["by_chunk"]}}

    sk: dict[str, dict] = {}
    print("scikit-learn SGDClassifier ...", flush=True)
    r = run_child(child("sgd", folder=str(full), threads=args.threads, budget=args.sgd_budget,
                        seed=args.seed), limit=args.sgd_budget * 4 + 600)
    sk["sgd"] = {"killed": True} if r["killed"] else \
        {**json.loads(r["stdout"].strip().splitlines()[-1]), "rss_mb": r["rss_mb"]}
    print("scikit-learn LogisticRegression ...", flush=True)
    logreg_folder = folders.get(args.logreg_n, full)
    r = run_child(child("logreg", folder=str(logreg_folder), threads=args.threads,
                        n=args.logreg_n), limit=args.logreg_limit)
    sk["logreg"] = {"killed": True} if r["killed"] else \
        {**json.loads(r["stdout"].strip().splitlines()[-1]), "rss_mb": r["rss_mb"]}

    if code_version() != version:
        version += f" at the start, {code_version()} at the end"
    text = section(args, sizes, results, sk, meta, (load_start, os.getloadavg()[0]), command,
                   version)
    print()
    print(text)
    if args.out:
        write_section(args.out, text)
        print(f"wrote the section into {args.out}")


if __name__ == "__main__":
    main()
