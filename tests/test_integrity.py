"""Damaged checkpoint files are named before anything loads them; pickles are refused, never unpickled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from faults import one_error_line, train

from gopd import integrity


def _tensors(tmp_path: Path, name: str = "model.safetensors") -> Path:
    path = tmp_path / name
    save_file({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}, str(path))
    return path


def test_a_complete_safetensors_file_passes(tmp_path):
    assert integrity.safetensors_problem(_tensors(tmp_path)) is None


def test_a_truncated_safetensors_file_is_named_with_its_sizes(tmp_path):
    path = _tensors(tmp_path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-5])
    assert integrity.safetensors_problem(path) == f"{path}: truncated ({size - 5} bytes, its header describes {size})"
    path.write_bytes(b"\x01\x02")
    assert integrity.safetensors_problem(path).startswith(f"{path}: truncated (2 bytes")


def test_another_format_under_the_name_is_not_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"not json at all here" + b"\0" * 10)
    assert integrity.safetensors_problem(path) == f"{path}: not a safetensors file (its header is not JSON)"
    torch.save({"a": torch.ones(3)}, path)  # a zip (torch.save) named .safetensors
    assert "truncated or not a safetensors file" in integrity.safetensors_problem(path)


def test_weights_problem_refuses_pickles_and_names_missing_shards(tmp_path):
    assert integrity.weights_problem(tmp_path) == f"{tmp_path}: no model weights (model.safetensors) in it"
    torch.save({"a": torch.ones(3)}, tmp_path / "pytorch_model.bin")
    problem = integrity.weights_problem(tmp_path)
    assert "only pickled weights (pytorch_model.bin)" in problem and "safe_serialization=True" in problem
    _tensors(tmp_path, "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert integrity.weights_problem(tmp_path) == (f"{tmp_path / 'model.safetensors.index.json'}: names shard "
                                                   f"model-00002-of-00002.safetensors, which is not in {tmp_path}")
    _tensors(tmp_path, "model-00002-of-00002.safetensors")
    assert integrity.weights_problem(tmp_path) is None


def test_a_manifest_catches_missing_resized_and_altered_files(tmp_path):
    _tensors(tmp_path, "student.safetensors")
    (tmp_path / "state.pt").write_bytes(b"0123456789")
    integrity.write_manifest(tmp_path)
    assert integrity.manifest_problem(tmp_path) is None
    (tmp_path / "state.pt").write_bytes(b"0123456780")  # same size, other bytes
    assert integrity.manifest_problem(tmp_path, hashes=False) is None
    assert integrity.manifest_problem(tmp_path) == f"{tmp_path / 'state.pt'}: contents changed since it was written (SHA-256 differs)"
    (tmp_path / "state.pt").write_bytes(b"01234")
    assert integrity.manifest_problem(tmp_path, hashes=False) == f"{tmp_path / 'state.pt'}: 5 bytes, 10 when written"
    (tmp_path / "state.pt").unlink()
    assert integrity.manifest_problem(tmp_path) == f"{tmp_path / 'state.pt'}: missing"


# ------------------------------------------------------------------------------- through the real CLI
class _Unpickled:
    """Unpickling it creates a file: proof that a pickle was (or was never) loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "pickle_only", "no_weights"])
@pytest.mark.parametrize("key", ["model.path", "teacher.path"])
def test_a_damaged_checkpoint_is_one_line_before_anything_loads(toy_world_mini, tmp_path, damage, key):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(toy_world_mini / ("student" if key == "model.path" else "teacher"), ckpt)
    weights = ckpt / "model.safetensors"
    marker = tmp_path / "unpickled"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif damage == "pickle_only":
        weights.unlink()
        torch.save({"x": _Unpickled(str(marker))}, ckpt / "pytorch_model.bin")
    else:
        weights.unlink()
    extra = ["teacher=rl_checkpoint"] if key == "teacher.path" else []
    line = one_error_line(train(tmp_path / "run", *extra, f"{key}={ckpt}"), 2)
    expected = {"truncated": f"{key}: {weights}: truncated (",
                "pickle_only": f"{key}: {ckpt}: holds only pickled weights (pytorch_model.bin)",
                "no_weights": f"{key}: {ckpt}: no model weights"}[damage]
    assert expected in line, line
    assert not marker.exists()  # the pickle was never loaded
