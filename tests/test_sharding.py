"""Sharded data (``--shard``): reading only some rows of a file (memory-mapped raw IDX and .npy,
a gzip stream passed through, Parquet row groups), each rank's batches, and sharded training
(gloo on 127.0.0.1) against replicated training."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import accept_files, make_dataset, make_idx_files
from softmaxlab.data import ChecksumError, DataOptions, load_data_spec, load_dataset
from softmaxlab.data.idx import IDXError, write_idx
from softmaxlab.data.rows import idx_shape, map_idx, map_npy, part_of, read_idx_rows
from softmaxlab.data.specs import SPECS
from softmaxlab.errors import ConfigError
from softmaxlab.fast import Shard
from test_distributed import history, params, softmaxlab, train_args


def mapped_files() -> dict[int, tuple[int, str]]:
    """start -> (end, path) of this process's file-backed memory mappings."""
    out = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            out[start] = (end, fields[5])
    return out


def backing_file(ptr: int) -> str | None:
    """The file whose mapping holds address ``ptr``, or None (anonymous memory)."""
    return next((path for start, (end, path) in mapped_files().items() if start <= ptr < end),
                None)


# --------------------------------------------------------------------------- reading parts


def test_part_of_shares_out_every_row_once():
    for n in (0, 1, 7, 120, 1001):
        for world in (1, 2, 3, 4):
            ranges = [part_of(n, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            sizes = [stop - start for start, stop in ranges]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        part_of(10, 2, 2)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_read_idx_rows_gives_the_rows_and_the_whole_files_md5(tmp_path, gz, dtype):
    arr = np.random.default_rng(0).integers(0, 200, (1001, 3, 4)).astype(dtype)
    path = write_idx(tmp_path / ("a.gz" if gz else "a"), arr, compress=gz)
    content = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert idx_shape(path) == arr.shape
    for start, stop in [(0, 1001), (0, 0), (500, 1001), (3, 7), (1001, 1001)]:
        for md5 in (False, True):
            rows, total, digest = read_idx_rows(path, start, stop, md5)
            np.testing.assert_array_equal(rows, arr[start:stop])
            assert rows.dtype == np.dtype(dtype) and total == 1001
            assert digest == (hashlib.md5(content).hexdigest() if md5 else None)
    with pytest.raises(ValueError, match="not within the 1001 rows"):
        read_idx_rows(path, 5, 1002)


def test_read_idx_rows_finds_damage_past_the_rows_it_keeps(tmp_path):
    arr = np.arange(4000, dtype=np.uint8).reshape(1000, 4)
    raw = write_idx(tmp_path / "a", arr, compress=False).read_bytes()
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(IDXError, match="cut short|broken gzip"):
        read_idx_rows(tmp_path / "cut.gz", 0, 10)
    (tmp_path / "long.gz").write_bytes(gzip.compress(raw + b"\0" * 100))
    with pytest.raises(IDXError, match="more data than its header declares"):
        read_idx_rows(tmp_path / "long.gz", 0, 10)
    (tmp_path / "short").write_bytes(raw[:-4])
    with pytest.raises(IDXError, match="payload"):
        read_idx_rows(tmp_path / "short", 0, 10)
    # a header declaring far more than the compressed file could hold: refused before inflating
    bomb = bytearray(raw[:12])
    bomb[4:8] = (2**31).to_bytes(4, "big")
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(bytes(bomb) + raw[12:]))
    with pytest.raises(IDXError, match="more than a gzip file"):
        read_idx_rows(tmp_path / "bomb.gz", 0, 10)


def test_a_raw_idx_file_is_memory_mapped_and_never_written(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "images", arr, compress=False)
    before = path.read_bytes()
    mapped = map_idx(path)
    np.testing.assert_array_equal(mapped, arr)
    x = torch.from_numpy(mapped)  # (writable: no copy, no warning)
    assert backing_file(x.data_ptr()) == str(path)
    x[0] = 7  # copy-on-write: the process's own page, the file stays as it was
    assert path.read_bytes() == before
    labels = write_idx(tmp_path / "labels", np.arange(300, dtype=np.int32), compress=False)
    np.testing.assert_array_equal(map_idx(labels), np.arange(300))  # big-endian converted
    with pytest.raises(IDXError, match="cannot be memory-mapped"):
        map_idx(write_idx(tmp_path / "g.gz", arr))


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_dataset_shards_are_the_training_set_cut_in_order(tmp_path, monkeypatch, gz):
    folder = make_idx_files(tmp_path / "d", n_train=121, gz=gz)
    accept_files(monkeypatch, folder)
    train, test = load_dataset(data_dir=folder)
    parts = [load_dataset(data_dir=folder, shard=(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat([p[0].images for p in parts]), train.images)
    assert torch.equal(torch.cat([p[0].labels for p in parts]), train.labels)
    assert [len(p[0]) for p in parts] == [40, 40, 41]
    assert all(torch.equal(p[1].images, test.images) for p in parts)  # the test set is whole
    if not gz:  # the training images of a raw file are a view of the mapped file
        assert backing_file(parts[1][0].images.data_ptr()).endswith("train-images-idx3-ubyte")
    # the md5 of the whole file is still checked when only a share is kept
    wrong = dataclasses.replace(SPECS["fashion-mnist"],
                                md5_raw={"train-images-idx3-ubyte": "0" * 32}, md5_gz={})
    monkeypatch.setitem(SPECS, "fashion-mnist", wrong)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        load_dataset(data_dir=folder, shard=(1, 3))


def write_own_data(tmp_path: Path, kind: str) -> str:
    """The same 101 training / 30 test images as data of ``kind``; its spec."""
    train, test = make_dataset(101, seed=4), make_dataset(30, seed=5)
    if kind in ("idx", "idx-gz"):
        folder = make_idx_files(tmp_path / kind, n_train=101, n_test=30, gz=kind == "idx-gz",
                                seed=0)
        for prefix, split in (("train", train), ("t10k", test)):
            suffix = ".gz" if kind == "idx-gz" else ""
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", split.images.numpy())
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                      split.labels.numpy().astype(np.uint8))
        return f"idx:{folder}"
    if kind == "npy":
        folder = tmp_path / "npy"
        folder.mkdir()
        for name, split in (("train", train), ("test", test)):
            np.save(folder / f"x_{name}.npy", split.images.numpy())
            np.save(folder / f"y_{name}.npy", split.labels.numpy())
        return f"npy:{folder}"
    if kind == "csv":
        for name, split in (("train", train), ("test", test)):
            rows = np.column_stack([split.labels.numpy(), split.images.numpy().reshape(
                len(split), -1)])
            header = "label," + ",".join(f"pixel{i + 1}" for i in range(784))
            np.savetxt(tmp_path / f"{name}.csv", rows, fmt="%d", delimiter=",", header=header,
                       comments="")
        return f"csv:{tmp_path / 'train.csv'}"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["idx", "idx-gz", "npy", "csv"])
def test_own_data_shards_are_the_training_set_cut_in_order(tmp_path, kind):
    spec = write_own_data(tmp_path, kind)
    options = DataOptions(test_data=str(tmp_path / "test.csv")) if kind == "csv" else None
    train, test, record = load_data_spec(spec, options)
    parts = [load_data_spec(spec, options, shard=(r, 2)) for r in range(2)]
    assert torch.equal(torch.cat([p[0].images for p in parts]), train.images)
    assert torch.equal(torch.cat([p[0].labels for p in parts]), train.labels)
    assert [len(p[0]) for p in parts] == [50, 51]
    for p in parts:
        assert p[0].class_names == train.class_names
        assert p[2]["n_train"] == 101 and p[2]["sources"] == record["sources"]
        assert torch.equal(p[1].images, test.images)
    if kind in ("idx", "npy"):  # memory-mapped: the share is a view of the file
        assert backing_file(parts[1][0].images.data_ptr()) is not None


def test_a_shard_reads_only_the_parquet_row_groups_holding_its_rows(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from PIL import Image

    data = make_dataset(100, seed=6)
    blobs = []
    for img in data.images.numpy():
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    table = pa.table({"image": pa.array([{"bytes": b, "path": None} for b in blobs]),
                      "label": pa.array(data.labels.numpy())})
    path = tmp_path / "d.parquet"
    pq.write_table(table, path, row_group_size=10)
    test = tmp_path / "test"
    test.mkdir()
    np.save(test / "x_train.npy", data.images.numpy()[:20])
    np.save(test / "y_train.npy", data.labels.numpy()[:20])
    options = DataOptions(test_data=f"npy:{test}")
    whole = load_data_spec(f"parquet:{path}", options)[0]
    read = []
    original = pq.ParquetFile.read_row_groups

    def recording(self, groups, *args, **kwargs):
        read.append(list(groups))
        return original(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", recording)
    part = load_data_spec(f"parquet:{path}", options, shard=(1, 3))[0]  # rows 33 to 66
    assert read == [[3, 4, 5, 6]]
    assert torch.equal(part.images, whole.images[33:66])
    assert torch.equal(part.labels, whole.labels[33:66])


def test_a_shard_needs_a_test_set_of_the_data(tmp_path):
    spec = write_own_data(tmp_path, "csv")
    with pytest.raises(ConfigError, match="sharded training needs data with a test set"):
        load_data_spec(spec, shard=(0, 2))


def test_npy_files_are_memory_mapped(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(100, dtype=np.uint8))
    assert isinstance(map_npy(tmp_path / "a.npy"), np.memmap)


# --------------------------------------------------------------------------- each rank's steps


@pytest.mark.parametrize("n,world,batch", [(120, 2, 16), (121, 3, 16), (1000, 4, 256),
                                           (3, 3, 1), (10, 4, 64)])
def test_sharded_steps_are_as_many_as_a_replicated_epochs_and_use_every_row_once(n, world,
                                                                                  batch):
    rows = tuple(stop - start for start, stop in (part_of(n, r, world) for r in range(world)))
    plans = []
    for rank in range(world):
        order = torch.randperm(rows[rank])
        idxs, ks = Shard(rank, world, lambda t: t, rows).batches(order, batch)
        assert torch.equal(torch.cat(idxs).sort().values, torch.arange(rows[rank]))
        plans.append((idxs, ks))
    ks = plans[0][1]
    assert all(p[1] == ks for p in plans)  # every rank agrees on each step's global batch
    assert all(len(p[0]) == len(ks) for p in plans)  # and takes the same number of steps
    assert sum(ks) == n and all(k > 0 for k in ks)
    for s, k in enumerate(ks):  # a step's batch is the ranks' chunks together
        assert k == sum(len(p[0][s]) for p in plans)
    replicated = -(-n // batch)
    assert len(ks) <= replicated
    if n >= batch * world:
        assert len(ks) == replicated and max(ks) - min(ks) <= world


# --------------------------------------------------------------------------- sharded training


def run_config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())


def test_sharded_lbfgs_is_replicated_lbfgs(tiny_idx_dir, tiny_env, tmp_path):
    """Full-batch L-BFGS sees the same objective from shards: the standardisation statistics
    are summed over them (exactly), and each rank's data term is over the same rows as a
    replicated run's rank: the same parameters, bit for bit."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--optimizer", "lbfgs", "--lbfgs-iters", "10", "--epochs", "3", "--weight-decay",
             "1e-3", "--standardize", "--nproc", "2"]
    assert softmaxlab(tiny_env, *train_args(tiny_idx_dir, one, *extra)).returncode == 0
    r = softmaxlab(tiny_env, *train_args(tiny_idx_dir, two, *extra, "--shard"))
    assert r.returncode == 0, r.stderr
    a, b = params(one), params(two)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the standardizer's statistics too
    assert [row["train_loss"] for row in history(one)] == \
        [row["train_loss"] for row in history(two)]
    cfg = run_config(two)
    assert cfg["shard_rows"] == [60, 60] and cfg["dataset"]["train_size"] == 120
    assert "sharded: 60/60 training images each" in r.stdout


@pytest.mark.parametrize("extra", [["--impl", "scratch", "--momentum", "0.9"],
                                   ["--impl", "concise", "--val-split", "20"]],
                         ids=["scratch", "concise-val"])
def test_a_sharded_run_resumes_bit_for_bit_with_the_same_ranks_only(tiny_idx_dir, tiny_env,
                                                                     tmp_path, extra):
    full, part = tmp_path / "full", tmp_path / "part"
    extra = [*extra, "--nproc", "2", "--shard"]
    r = softmaxlab(tiny_env, *train_args(tiny_idx_dir, full, "--epochs", "3", *extra))
    assert r.returncode == 0, r.stderr
    assert softmaxlab(tiny_env, *train_args(tiny_idx_dir, part, "--epochs", "1",
                                            *extra)).returncode == 0
    r = softmaxlab(tiny_env, "train", "--resume", str(part), "--epochs", "3", "--nproc", "2")
    assert r.returncode == 0, r.stderr
    a, b = params(full), params(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history(full) == [dict(row, seconds=x["seconds"]) for row, x in
                             zip(history(part), history(full))]
    if "--val-split" in extra:
        assert all("val_acc" in row for row in history(full))
        assert run_config(full)["dataset"]["val_size"] == 20
    r = softmaxlab(tiny_env, "train", "--resume", str(part), "--epochs", "4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "was trained with --shard in 2 processes; resume it with 2 (--nproc 2" in r.stderr
    assert len(history(part)) == 3  # nothing written


def test_sharded_training_on_fashion_mnist_matches_replicated_accuracy(real_data_dir, tmp_path):
    """Each rank shuffles its own half, so the batches differ from the replicated run's; the
    test accuracy after the default 10 epochs is within 0.005 of it."""
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    accs = {}
    for name, extra in (("replicated", []), ("sharded", ["--shard"])):
        out = tmp_path / name
        r = subprocess.run([sys.executable, "-m", "softmaxlab", "train", "--data-dir",
                            str(real_data_dir), "--out", str(out), "--no-report", "--no-progress",
                            "--nproc", "2", *extra], env=env, capture_output=True, text=True,
                           timeout=600, check=False)
        assert r.returncode == 0, r.stderr
        accs[name] = history(out)[-1]["test_acc"]
    assert run_config(tmp_path / "sharded")["shard_rows"] == [30000, 30000]
    assert abs(accs["sharded"] - accs["replicated"]) <= 0.005, accs
    assert accs["sharded"] > 0.8
