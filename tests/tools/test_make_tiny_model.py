"""scripts/make_tiny_model.py writes a small, deterministic, loadable, informative checkpoint."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import numpy as np
import torch

from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_tools.tiny_model import INFORMATIVE_CLASSES, MARKER, is_random_weight_checkpoint, write_checkpoint
from support.audio import noise, speech


def test_layout_and_size(tiny_model_dir):
    files = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json",
            "tokenizer.json"} <= files
    assert sum(p.stat().st_size for p in tiny_model_dir.iterdir()) < 5_000_000
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3_asr"
    assert config["thinker_config"]["model_type"] == "qwen3_forced_aligner"
    tokenizer = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer["extra_special_tokens"]["audio_token"] == "<|audio_pad|>"


def test_the_checkpoint_says_its_weights_are_random(tiny_model_dir, tmp_path):
    assert "meaningless" in (tiny_model_dir / MARKER).read_text()
    assert is_random_weight_checkpoint(tiny_model_dir)
    older = tmp_path / "older"  # made before the marker: the tiny tokenizer gives it away
    older.mkdir()
    (older / "tokenizer.json").write_bytes((tiny_model_dir / "tokenizer.json").read_bytes())
    assert is_random_weight_checkpoint(older)
    real = tmp_path / "real"  # a real tokenizer.json is about 11 MB
    real.mkdir()
    (real / "tokenizer.json").write_bytes(b" " * 11_000_000)
    assert not is_random_weight_checkpoint(real)
    assert not is_random_weight_checkpoint(tmp_path / "missing")


def test_deterministic(tiny_model_dir, tmp_path):
    again = write_checkpoint(tmp_path / "again", "tiny")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        digest = lambda d: hashlib.sha256((d / name).read_bytes()).hexdigest()  # noqa: E731
        assert digest(again) == digest(tiny_model_dir), name


def test_loads_through_from_pretrained_with_the_aligner_head(reference_aligner):
    head = reference_aligner.model.thinker.lm_head
    assert head.out_features == 5000
    assert torch.count_nonzero(head.weight[INFORMATIVE_CLASSES:]) == 0
    audio_id = reference_aligner.processor.tokenizer.convert_tokens_to_ids("<|audio_pad|>")
    assert reference_aligner.model.config.thinker_config.audio_token_id == audio_id


def test_aligns_chinese_and_english_informatively(reference_aligner):
    clip = speech(5.0)
    for text in ("奇异恩典 何等甘甜 我罪已得赦免", "Amazing grace how sweet the sound that saved a wretch like me"):
        items = reference_aligner.align((clip, SAMPLE_RATE), text, "Chinese")[0]
        starts = [item.start_time for item in items]
        assert len(items) == (len(text.replace(" ", "")) if "奇" in text else len(text.split()))
        assert len(set(starts)) >= 2, starts
        assert max(item.end_time for item in items) < 5.0
    other = reference_aligner.align((noise(5.0, seed=3), SAMPLE_RATE), "奇异恩典 何等甘甜 我罪已得赦免", "Chinese")[0]
    same = reference_aligner.align((clip, SAMPLE_RATE), "奇异恩典 何等甘甜 我罪已得赦免", "Chinese")[0]
    assert [i.start_time for i in other] != [i.start_time for i in same]
    assert np.all(np.diff([i.start_time for i in same]) >= 0)


def test_files_honour_the_umask(tmp_path):
    """A checkpoint made by root must be readable by the container's uid 10001 (umask 022 -> 0644)."""
    previous = os.umask(0o022)
    try:
        again = write_checkpoint(tmp_path / "readable", "tiny")
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in again.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, {k: oct(v) for k, v in modes.items()}
