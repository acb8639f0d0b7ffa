"""Devices: the core makes every tensor on the data's device (checked on the CPU by making "meta"
the default device: a tensor created without a device lands there and cannot mix with the data),
and asking for a device that is not there is one clear line."""

from __future__ import annotations

import pytest
import torch

from conftest import make_dataset
from softmaxlab.cli import main
from softmaxlab.config import TrainConfig
from softmaxlab.runner import Session, resolve_device

CONFIGS = {
    "scratch sgd, momentum, standardised": {"momentum": 0.9, "standardize": True},
    "concise sgd, momentum": {"impl": "concise", "momentum": 0.9},
    "lbfgs": {"optimizer": "lbfgs", "lbfgs_iters": 2, "weight_decay": 1e-3},
    "augmented, validation split, mse": {"augment": True, "val_split": 20, "loss": "mse"},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_creates_every_tensor_on_the_datas_device(name):
    train, test = make_dataset(200, 0), make_dataset(60, 1)
    config = TrainConfig(epochs=2, batch_size=32, **CONFIGS[name])
    want = Session(config, train, test).fit()
    with torch.device("meta"):  # the default device of every factory call without a device
        got = Session(config, train, test, device="cpu").fit()
    assert [r["train_loss"] for r in got] == [r["train_loss"] for r in want]
    assert [r["test_acc"] for r in got] == [r["test_acc"] for r in want]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_where_there_is_none(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--device", "cuda", "--data-dir", str(tiny_idx_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().endswith("--device cuda: this machine has no CUDA GPU that torch can use "
                                f"(torch {torch.__version__}); use --device cpu or auto")
    assert not out.exists()
    assert resolve_device("auto") == torch.device("cpu")
