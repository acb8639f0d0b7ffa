"""Shared helpers and fixtures: the tiny datasets (in memory and as IDX files), the real
Fashion-MNIST, a clean data env, and a test dataset spec with a local HTTP mirror."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

# scikit-learn's check_estimator tests array-API inputs only when scipy's array API support is on;
# it must be set before scipy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import torch

from softmaxlab.data import SPECS, ImageDataset, write_idx
from softmaxlab.data.specs import FASHION_MNIST, ROLES, DatasetSpec

# where Debian's dataset-fashion-mnist package installs the four files
REAL_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
REAL_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# the four file names (without .gz) of Fashion-MNIST and of make_spec's specs
NAMES = [FASHION_MNIST.files[r] for r in ROLES]
# environment variables that change where data is looked for or fetched from
DATA_ENV = ("SOFTMAXLAB_DATA", "SOFTMAXLAB_MIRROR", "SOFTMAXLAB_OFFLINE", "http_proxy",
            "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


# share of make_dataset's images drawn as the next class: a trained model makes some mistakes
MISDRAWN = 0.15


def make_dataset(
    n: int,
    seed: int = 0,
    num_classes: int = 10,
    image_shape: tuple[int, int] = (28, 28),
    class_names: tuple[str, ...] | None = None,
    name: str = "tiny",
) -> ImageDataset:
    """A tiny ImageDataset a linear model can learn: noise plus a bright class-dependent stretch.

    Images: uint8 (n, H, W) from ``seed``; noise in 0-89, and the image of class k brightened by
    120 on the k-th of ``num_classes`` equal stretches of its pixels (row-major: horizontal bands).
    ``MISDRAWN`` (15%) of the images are drawn as the next class, so a trained model makes some
    confident mistakes. Every image's first two pixels are 0 and 255 (the full range). Labels:
    int64 ``i % num_classes`` (balanced when n is a multiple of num_classes). Class names:
    ``class_names`` (``num_classes`` of them), else "class 0", "class 1", ...
    """
    if class_names is None:
        class_names = tuple(f"class {k}" for k in range(num_classes))
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
    pixels = int(np.prod(image_shape))
    if not 2 <= num_classes <= pixels:
        raise ValueError(f"num_classes={num_classes} does not fit {pixels} pixels")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    drawn = np.where(rng.random(n) < MISDRAWN, (labels + 1) % num_classes, labels)
    images = rng.integers(0, 90, size=(n, pixels))
    edges = [k * pixels // num_classes for k in range(num_classes + 1)]
    for k in range(num_classes):
        images[drawn == k, edges[k]:edges[k + 1]] += 120
    images[:, :2] = (0, 255)
    return ImageDataset(torch.from_numpy(images.reshape(n, *image_shape).astype(np.uint8)),
                        torch.from_numpy(labels.astype(np.int64)), tuple(class_names), name)


def make_idx_files(
    folder: Path,
    n_train: int = 120,
    n_test: int = 60,
    gz: bool = True,
    num_classes: int = 10,
    image_shape: tuple[int, int] = (28, 28),
    seed: int = 0,
) -> Path:
    """Write the four IDX files of a tiny dataset into ``folder`` (created); returns ``folder``.

    The splits are ``make_dataset``'s (train from seed ``2 * seed``, test from ``2 * seed + 1``):
    uint8 (N, H, W) images including 0 and 255; uint8 labels ``i % num_classes`` (balanced when N
    is a multiple of num_classes). Names as Fashion-MNIST's, plus ``.gz`` if ``gz``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for offset, prefix, n in ((0, "train", n_train), (1, "t10k", n_test)):
        split = make_dataset(n, 2 * seed + offset, num_classes, image_shape)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", split.images.numpy())
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                  split.labels.numpy().astype(np.uint8))
    return folder


def raw_md5s(folder: Path) -> dict[str, str]:
    """File name without .gz -> md5 of its uncompressed content, for the IDX files in ``folder``."""
    from softmaxlab.data.idx import read_bytes

    out = {}
    for path in sorted(folder.iterdir()):
        name = path.name.removesuffix(".gz")
        if name in NAMES:
            out[name] = hashlib.md5(read_bytes(path)).hexdigest()
    return out


def accept_files(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make the specs with Fashion-MNIST's file names (fashion-mnist, mnist, kmnist) accept
    ``folder``'s files (their md5s) in this test."""
    md5s = raw_md5s(folder)
    for name, spec in list(SPECS.items()):
        if set(spec.files.values()) == set(NAMES):  # (EMNIST's and QMNIST's files are others)
            monkeypatch.setitem(SPECS, name, dataclasses.replace(spec, md5_gz={}, md5_raw=md5s))


@pytest.fixture
def tiny_idx_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a tiny Fashion-MNIST look-alike: 120 train / 60 test 28x28 images, .gz.

    Labels 0-9, balanced. For this test the fashion-mnist and mnist specs accept these files'
    md5s, so ``--data-dir`` / ``load_dataset(data_dir=...)`` load them like the real ones.
    """
    folder = make_idx_files(tmp_path / "tiny")
    accept_files(monkeypatch, folder)
    return folder


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST folder; skips without it (fails instead when CI=true)."""
    if all((REAL_DATA_DIR / f).is_file() for f in REAL_FILES):
        return REAL_DATA_DIR
    message = (f"the real Fashion-MNIST is not in {REAL_DATA_DIR}; install it with "
               "`sudo apt-get install dataset-fashion-mnist`")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No SOFTMAXLAB_* or proxy variables; XDG_CACHE_HOME is a fresh folder (returned, not made)."""
    for name in DATA_ENV:
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread (use via ``pytestmark``).

    For tiny matmuls on a busy 2-core machine torch's intra-op threads spin against each other and
    make them ~10x slower. Results do not depend on the thread count.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- data sources


def make_spec(tmp_path: Path, **changes) -> DatasetSpec:
    """A dataset spec "tiny" (no md5s, a dead mirror) whose usual folders all live under
    ``tmp_path``; ``changes`` replace its fields."""
    spec = dataclasses.replace(
        FASHION_MNIST, name="tiny", md5_gz={}, md5_raw={}, mirrors=("http://127.0.0.1:9/",),
        system_dirs=(str(tmp_path / "system"),), system_package="dataset-tiny",
        torchvision_name="Tiny",
    )
    return dataclasses.replace(spec, **changes)


def register(monkeypatch: pytest.MonkeyPatch, spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to SPECS under its name for this test; returns it."""
    monkeypatch.setitem(SPECS, spec.name, spec)
    return spec


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` that is not one of the four dataset files."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.removesuffix(".gz") not in NAMES)


@pytest.fixture
def places(tmp_path, monkeypatch, isolated_data_env):
    """The four usual folders of ``make_spec``'s spec (cache, system, ./data, ../data), cwd inside."""
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return {
        "cache": isolated_data_env / "softmaxlab" / "tiny",
        "system": tmp_path / "system",
        "./data": cwd / "data" / "Tiny" / "raw",
        "../data": tmp_path / "work" / "data" / "Tiny" / "raw",
    }


class Mirror:
    """A local HTTP server; ``routes`` maps a path to what it answers; it counts requests.

    An answer is bytes (200 with that body), an int (that HTTP error), ``("stall", body)`` (no
    answer until the test ends), ``("stall_body", body)`` (headers and half the body, then
    silence) or ``("short", body)`` (a Content-Length of the whole body, half of it, then close).
    """

    def __init__(self, routes: dict[str, object]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        self.release = threading.Event()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                answer = mirror.routes.get(self.path, 404)
                if isinstance(answer, int):
                    self.send_error(answer)
                    return
                kind, body = answer if isinstance(answer, tuple) else ("ok", answer)
                if kind == "stall":
                    mirror.release.wait(10)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "ok":
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if kind == "stall_body":
                    mirror.release.wait(10)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """``serve(routes)`` starts a Mirror on 127.0.0.1; all are stopped at the end of the test."""
    mirrors: list[Mirror] = []

    def start(routes: dict[str, object]) -> Mirror:
        mirrors.append(Mirror(routes))
        return mirrors[-1]

    yield start
    for m in mirrors:
        m.close()


def routes_for(folder: Path, prefix: str = "/", names=NAMES) -> dict[str, object]:
    """Routes serving ``folder``'s .gz files as ``<prefix><name>.gz``."""
    return {f"{prefix}{n}.gz": (folder / f"{n}.gz").read_bytes() for n in names}


# ------------------------------------------------------------------ the command in a child

# The child accepts the tiny dataset's md5s, may patch the code (PATCH), then runs the command.
CHILD = """\
import dataclasses, json, sys
from softmaxlab.data.specs import SPECS
SPECS['fashion-mnist'] = dataclasses.replace(SPECS['fashion-mnist'], md5_gz={{}},
                                             md5_raw={md5s!r})
{patch}
from softmaxlab.cli import run
run(sys.argv[1:])
"""


def command(tiny_idx_dir: Path, *args: str, patch: str = "", env: dict | None = None,
            **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    child = CHILD.format(md5s=raw_md5s(tiny_idx_dir), patch=patch)
    argv = [sys.executable, "-c", child, *args]
    if popen:
        return subprocess.Popen(argv, text=True, env=env, **popen)
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)


def train_args(tiny_idx_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(tiny_idx_dir), "--out", str(out), "--no-progress",
            "--no-report", "--batch-size", "16", *extra]


# the child reports each finished epoch on stderr and waits for a signal after the first
PAUSE = """\
import sys, time
from softmaxlab import runner
fit = runner.Session.fit
def fit_reporting(self, history=(), callbacks=(), wrap=None):
    def report(h):
        print(f"EPOCH {len(h)} DONE", file=sys.stderr, flush=True)
        if len(h) == 1:
            time.sleep(60)
    return fit(self, history, [*callbacks, report], wrap)
runner.Session.fit = fit_reporting
"""


# Every Python process of these tests (the launcher's and each rank's) accepts the tiny
# dataset's md5s, and, when SOFTMAXLAB_TEST_STOP_RANK is set, that rank stops after epoch 1,
# saying so on stderr (a test-side hook: a rank that hangs).
SITECUSTOMIZE = """\
import dataclasses, os, sys, time
from softmaxlab.data.specs import SPECS
SPECS['fashion-mnist'] = dataclasses.replace(SPECS['fashion-mnist'], md5_gz={{}},
                                             md5_raw={md5s!r})
if os.environ.get('SOFTMAXLAB_TEST_STOP_RANK') == os.environ.get('RANK', '-'):
    from softmaxlab import runner
    fit = runner.Session.fit
    def stopping(self, history=(), callbacks=(), wrap=None):
        def stop(h):
            if len(h) == 1:
                print(f"RANK {{os.environ['RANK']}} STOPPED", file=sys.stderr, flush=True)
                time.sleep(600)
        return fit(self, history, [*callbacks, stop], wrap)
    runner.Session.fit = stopping
"""


@pytest.fixture
def tiny_env(tiny_idx_dir, tmp_path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(md5s=raw_md5s(tiny_idx_dir)))
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "GLOO_SOCKET_IFNAME": "lo"}
