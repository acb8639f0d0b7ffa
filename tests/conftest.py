"""Shared fixtures: tiny IDX datasets written on the fly, the real Fashion-MNIST, a clean data env."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

# scikit-learn's check_estimator tests array-API inputs only when scipy's array API support is on;
# it must be set before scipy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

from softmaxlab.data import SPECS, write_idx
from softmaxlab.data.specs import ROLES

# where Debian's dataset-fashion-mnist package installs the four files
REAL_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
REAL_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# environment variables that change where data is looked for or fetched from
DATA_ENV = ("SOFTMAXLAB_DATA", "SOFTMAXLAB_MIRROR", "SOFTMAXLAB_OFFLINE", "http_proxy",
            "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


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

    Images: random uint8 (N, H, W) from ``seed``, including 0 and 255. Labels: ``i % num_classes``
    (balanced when N is a multiple of num_classes). Names as Fashion-MNIST's, plus ``.gz`` if ``gz``.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, *image_shape), dtype=np.uint8)
        images.reshape(n, -1)[:, :2] = (0, 255)
        labels = (np.arange(n) % num_classes).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


def raw_md5s(folder: Path) -> dict[str, str]:
    """File name without .gz -> md5 of its uncompressed content, for the IDX files in ``folder``."""
    from softmaxlab.data.idx import read_bytes

    spec_names = {SPECS["fashion-mnist"].files[r] for r in ROLES}
    out = {}
    for path in sorted(folder.iterdir()):
        name = path.name.removesuffix(".gz")
        if name in spec_names:
            out[name] = hashlib.md5(read_bytes(path)).hexdigest()
    return out


def accept_files(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make the fashion-mnist and mnist specs accept ``folder``'s files (their md5s) in this test."""
    md5s = raw_md5s(folder)
    for name, spec in list(SPECS.items()):
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
