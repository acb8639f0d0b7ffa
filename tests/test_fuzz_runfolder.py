"""Fuzzing the run-folder loader: whatever is in a run folder's files, loading it either works or
raises softmaxlab's own error (never a KeyError, a dtype error or a crash later on)."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_dataset
from softmaxlab import checkpoint
from softmaxlab.config import TrainConfig
from softmaxlab.errors import SoftmaxlabError
from softmaxlab.runfolder import read_history, read_run_config, read_state
from softmaxlab.runner import Session

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow])
JSON_FILES = ("config.json", "history.json", "state.json")
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors")

TRAIN, TEST = make_dataset(64, 0, image_shape=(6, 6)), make_dataset(20, 1, image_shape=(6, 6))
CONFIG = TrainConfig(epochs=1, batch_size=16, momentum=0.9, standardize=True)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A one-epoch run folder (momentum and standardisation: every kind of tensor it holds)."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    session = Session(CONFIG, TRAIN, TEST)
    checkpoint.write_config(out, session)
    checkpoint.save_checkpoint(out, session, session.fit())
    return out


def load_everything(run: Path) -> None:
    """What `predict`, `evaluate`, `report` and `--resume` read of a run folder, then use it."""
    for read in (read_run_config, read_history, read_state):
        read(run)
    model = checkpoint.load_trained(run)
    model.predict_proba(TEST.to_float())
    session = Session(CONFIG, TRAIN, TEST)
    checkpoint.restore_session(run, session)
    session.config.epochs = 2
    session.fit(checkpoint.read_history(run))


def only_our_errors(good_run: Path, name: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(good_run, run)
        (run / name).write_bytes(content)
        try:
            load_everything(run)
        except SoftmaxlabError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=8)


def _paths(obj, prefix=()):
    """Every path (a tuple of keys and indices) into a JSON value, the root included."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _replaced(obj, path, value, delete: bool):
    if not path:
        return value
    obj = json.loads(json.dumps(obj))  # a copy
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@FUZZ
@given(data=st.data(), name=st.sampled_from(JSON_FILES))
def test_mutated_json_fields(good_run, data, name):
    """A field of config.json, history.json or state.json replaced by any JSON value, or gone."""
    obj = json.loads((good_run / name).read_text())
    path = data.draw(st.sampled_from(list(_paths(obj))), label="path")
    delete = bool(path) and data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(json_values, label="value")
    text = json.dumps(_replaced(obj, path, value, delete))  # (NaN and Infinity included)
    only_our_errors(good_run, name, text.encode())


@FUZZ
@given(data=st.data(), name=st.sampled_from(JSON_FILES + TENSOR_FILES))
def test_random_bytes_truncations_and_flips(good_run, data, name):
    good = (good_run / name).read_bytes()
    how = data.draw(st.sampled_from(["random", "truncate", "flip"]), label="how")
    if how == "random":
        content = data.draw(st.binary(max_size=300), label="bytes")
    elif how == "truncate":
        content = good[:data.draw(st.integers(0, len(good) - 1), label="length")]
    else:
        content = bytearray(good)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            # mostly in the first bytes, where the headers are
            i = data.draw(st.integers(0, min(len(good), 400) - 1), label="at")
            content[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        content = bytes(content)
    only_our_errors(good_run, name, content)


def _header(content: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", content[:8])[0]
    return json.loads(content[8:8 + n]), content[8 + n:]


@FUZZ
@given(data=st.data(), name=st.sampled_from(TENSOR_FILES))
def test_mutated_safetensors_headers(good_run, data, name):
    """A field of a safetensors header (dtype, shape, offsets, metadata) changed or gone."""
    header, payload = _header((good_run / name).read_bytes())
    path = data.draw(st.sampled_from(list(_paths(header))[1:]), label="path")
    delete = data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(
        json_values | st.sampled_from(["F64", "I64", "U8", "BOOL", "F16", "BF16"])
        | st.lists(st.integers(0, 2**40), max_size=3), label="value")
    text = json.dumps(_replaced(header, path, value, delete)).encode()
    extra = data.draw(st.sampled_from([b"", b"\0" * 8, payload[:7]]), label="tail")
    only_our_errors(good_run, name, struct.pack("<Q", len(text)) + text + payload + extra)


def test_the_good_run_loads(good_run):
    """(The fuzzing starts from a folder that loads.)"""
    load_everything(good_run)
    assert torch.isfinite(checkpoint.load_trained(good_run).W).all()
