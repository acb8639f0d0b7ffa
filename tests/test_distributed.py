"""Data-parallel training on torch.distributed (gloo on 127.0.0.1): the same model as one process,
one writer, resumable, bounded failures, and two launchers as two "nodes"."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from softmaxlab import distributed
from softmaxlab.config import TrainConfig
from softmaxlab.data import load_dataset
from softmaxlab.models import weights
from softmaxlab.runner import Session

COMMON = ["--batch-size", "16", "--no-report", "--no-progress", "--seed", "3"]


def softmaxlab(env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softmaxlab", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=300, **kwargs)


def train_args(tiny_idx_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(tiny_idx_dir), "--out", str(out), *COMMON, *extra]


def params(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IMPLS = [["--impl", "scratch", "--momentum", "0.9", "--lr-schedule", "cosine"],
         ["--impl", "concise", "--momentum", "0.9", "--weight-decay", "1e-3"]]


@pytest.mark.parametrize("extra", IMPLS, ids=["scratch", "concise"])
def test_two_ranks_train_what_one_process_trains(tiny_idx_dir, tiny_env, tmp_path, extra):
    """2 ranks vs today's single-process command: parameters within 5e-5, history within 2e-4;
    one run folder, written by rank 0, recording the world size; only rank 0 prints."""
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = softmaxlab(tiny_env, *train_args(tiny_idx_dir, one, "--epochs", "3", *extra))
    r2 = softmaxlab(tiny_env, *train_args(tiny_idx_dir, two, "--epochs", "3", "--nproc", "2",
                                          *extra))
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    a, b = params(one), params(two)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=5e-5)
    for row1, row2 in zip(history(one), history(two), strict=True):
        for key in ("train_loss", "train_acc", "test_acc"):
            assert row2[key] == pytest.approx(row1[key], abs=2e-4), key
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    assert r2.stdout.count("epoch   3/3") == 1 and "2 processes" in r2.stdout


def session_at_world_size_one(tiny_idx_dir, monkeypatch, config: TrainConfig) -> Session:
    """The data-parallel code path (shares, all-reduce, summed metrics) in a job of 1 rank."""
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                       "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    group = distributed.init(30)
    try:
        train, test = load_dataset(data_dir=tiny_idx_dir)
        session = Session(config, train, test, group=group)
        session.fit()
        return session
    finally:
        distributed.close()


@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_two_ranks_equal_one_rank_of_the_same_code(tiny_idx_dir, tiny_env, tmp_path,
                                                   monkeypatch, impl):
    config = TrainConfig(impl=impl, epochs=2, batch_size=16, seed=3, momentum=0.9)
    W1, b1 = weights(session_at_world_size_one(tiny_idx_dir, monkeypatch, config).model)
    two = tmp_path / "two"
    r = softmaxlab(tiny_env, *train_args(tiny_idx_dir, two, "--epochs", "2", "--nproc", "2",
                                         "--impl", impl, "--momentum", "0.9"))
    assert r.returncode == 0, r.stderr
    torch.testing.assert_close(params(two)["W"], W1, rtol=0, atol=1e-6)
    torch.testing.assert_close(params(two)["b"], b1, rtol=0, atol=1e-6)


def test_resume_a_distributed_run_with_as_many_or_fewer_ranks(tiny_idx_dir, tiny_env, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    extra = ["--momentum", "0.9", "--nproc", "2"]
    assert softmaxlab(tiny_env, *train_args(tiny_idx_dir, full, "--epochs", "3",
                                            *extra)).returncode == 0
    assert softmaxlab(tiny_env, *train_args(tiny_idx_dir, part, "--epochs", "1",
                                            *extra)).returncode == 0
    r = softmaxlab(tiny_env, "train", "--resume", str(part), "--epochs", "3", "--nproc", "2")
    assert r.returncode == 0, r.stderr
    a, b = params(full), params(part)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same ranks: bit for bit
    assert [r["train_loss"] for r in history(full)] == [r["train_loss"] for r in history(part)]
    # the replicated data lets the number of ranks change
    r = softmaxlab(tiny_env, "train", "--resume", str(part), "--epochs", "4")
    assert r.returncode == 0 and len(history(part)) == 4


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_launchers_as_two_nodes(tiny_idx_dir, tiny_env, tmp_path, rendezvous):
    """torchrun --nnodes 2 on 127.0.0.1, one launcher per "node": the same model as one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert softmaxlab(tiny_env, *train_args(tiny_idx_dir, one, "--epochs", "2")).returncode == 0
    port = str(free_port())
    launchers = []
    for node in (0, 1):
        if rendezvous == "static":
            how = ["--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port]
        else:
            how = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                   "--rdzv-id", "softmaxlab-test"]
        argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                "--nproc-per-node", "1", *how, "-m", "softmaxlab",
                *train_args(tiny_idx_dir, two, "--epochs", "2")]
        launchers.append(subprocess.Popen(argv, env=tiny_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=300) for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], results
    for key, value in params(one).items():
        torch.testing.assert_close(params(two)[key], value, rtol=0, atol=5e-5)
    assert sum(out.count("epoch   2/2") for out, _ in results) == 1  # rank 0 alone prints


def test_a_stopped_rank_ends_the_job_within_the_timeout(tiny_idx_dir, tiny_env, tmp_path):
    """Rank 1 stops after epoch 1 (it says so); rank 0's next all-reduce times out: the job ends
    with an error naming the rank and the cause, and epoch 1's checkpoint stays whole."""
    out = tmp_path / "run"
    env = {**tiny_env, "SOFTMAXLAB_TEST_STOP_RANK": "1"}
    job = subprocess.Popen([sys.executable, "-m", "softmaxlab",
                            *train_args(tiny_idx_dir, out, "--epochs", "3", "--nproc", "2",
                                        "--dist-timeout", "5")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = job.communicate(timeout=240)
    finally:
        job.kill()
    assert "RANK 1 STOPPED" in err
    assert job.returncode != 0
    assert "rank 0 of 2: summing a tensor with the other ranks failed (a rank died, hung or " \
           "cannot be reached)" in err
    assert len(history(out)) == 1
    r = softmaxlab(tiny_env, "train", "--resume", str(out), "--epochs", "2")
    assert r.returncode == 0, r.stderr  # the last completed checkpoint resumes


def test_threads_are_shared_out_among_the_ranks(tiny_idx_dir, tiny_env, tmp_path):
    cores = len(os.sched_getaffinity(0))
    r = softmaxlab(tiny_env, *train_args(tiny_idx_dir, tmp_path / "run", "--epochs", "1",
                                         "--nproc", str(cores + 1)))
    assert r.returncode == 0, r.stderr
    assert f"note: {cores + 1} processes on {cores} cores: each gets 1 thread" in r.stderr
    assert r.stderr.count("note:") == 1  # rank 0 alone says it
    assert f"1 thread each, {cores + 1} processes" in r.stdout


def test_augment_is_refused_with_several_ranks(tiny_idx_dir, tiny_env, tmp_path):
    r = softmaxlab(tiny_env, *train_args(tiny_idx_dir, tmp_path / "run", "--nproc", "2",
                                         "--augment"))
    assert r.returncode == 2
    assert "distributed training does not take --augment" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_lbfgs_on_two_ranks_ends_where_one_process_ends(tiny_idx_dir, tiny_env, tmp_path, impl):
    """Spark's scheme: every evaluation's loss and gradient summed over the ranks in one
    all-reduce, the same L-BFGS update everywhere."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--optimizer", "lbfgs", "--lbfgs-iters", "10", "--epochs", "3", "--weight-decay",
             "1e-3", "--impl", impl]
    assert softmaxlab(tiny_env, *train_args(tiny_idx_dir, one, *extra)).returncode == 0
    r = softmaxlab(tiny_env, *train_args(tiny_idx_dir, two, *extra, "--nproc", "2"))
    assert r.returncode == 0, r.stderr
    h1, h2 = history(one)[-1], history(two)[-1]
    assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-4)
    assert abs(h2["test_acc"] - h1["test_acc"]) * 60 <= 2  # at most 2 of the 60 test images
    evals = [json.loads((out / "state.json").read_text())["optimizer_state"]["__dict__"][0][1]
             for out in (one, two)]
    counts = [dict(e["__dict__"])["func_evals"] for e in evals]
    assert counts[0] > 3 and abs(counts[0] - counts[1]) <= 2  # one all-reduce per evaluation
