"""sow_qwen3_contract.checkpoint: the one check of a model directory, on hand-made directories (headers only)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from sow_qwen3_contract.checkpoint import HEAD_TENSOR, checkpoint_parameters, checkpoint_problem, tensor_shapes


def write_weights(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file whose header lists ``shapes`` (float32; the data bytes are zeros)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(offset))


def checkpoint(path: Path, classes: int = 8, head: int = 8, model_type: str = "qwen3_forced_aligner") -> Path:
    path.mkdir()
    config = {"thinker_config": {"model_type": model_type, "classify_num": classes}}
    (path / "config.json").write_text(json.dumps(config))
    for name in ("preprocessor_config.json", "tokenizer_config.json", "tokenizer.json"):
        (path / name).write_text("{}")
    write_weights(path / "model.safetensors", {HEAD_TENSOR: [head, 4], "thinker.embed": [3, 4]})
    return path


def test_a_complete_checkpoint_has_no_problem_and_its_weights_are_counted(tmp_path):
    path = checkpoint(tmp_path / "model")
    assert checkpoint_problem(path) is None
    assert tensor_shapes(path) == {HEAD_TENSOR: [8, 4], "thinker.embed": [3, 4]}
    assert checkpoint_parameters(path) == 44


@pytest.mark.parametrize("breakage, problem", [
    (lambda p: [f.unlink() for f in p.iterdir()] and p.rmdir(), "does not exist"),
    (lambda p: (p / "model.safetensors").unlink(), "is missing model.safetensors"),
    (lambda p: (p / "config.json").unlink(), "is missing config.json"),
    (lambda p: (p / "tokenizer.json").unlink(), "is missing tokenizer.json (or vocab.json + merges.txt)"),
    (lambda p: (p / "config.json").write_text("{not json"), "unreadable config.json"),
    (lambda p: (p / "model.safetensors").write_bytes(b"\x05"), "unreadable weights header"),
    (lambda p: write_weights(p / "model.safetensors", {"thinker.embed": [3, 4]}), f"no timestamp head {HEAD_TENSOR}"),
    (lambda p: write_weights(p / "model.safetensors", {HEAD_TENSOR: [5, 4]}), "timestamp head has 5 classes, config says 8"),
])
def test_each_problem_is_named_with_the_path(tmp_path, breakage, problem):
    path = checkpoint(tmp_path / "model")
    breakage(path)
    found = checkpoint_problem(path)
    assert found is not None and problem in found and str(path) in found


def test_another_model_is_not_a_forced_aligner(tmp_path):
    path = checkpoint(tmp_path / "model", model_type="qwen3_asr_thinker")
    assert "not a forced aligner" in checkpoint_problem(path)


def test_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("")
    assert checkpoint_problem(tmp_path / "file") == f"model path {tmp_path / 'file'} is not a directory"
