"""sow_aligner.encoder_linears: the audio encoder's biases added inside oneDNN's matmul, bit for bit addmm's.

On the tiny real-architecture checkpoint in bfloat16: the encoder's output with the fused linears equals
qwen-asr's own bit for bit, the engine loads them only on CPU in bfloat16, and a oneDNN that disagrees is
refused with a log line.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from qwen_asr import Qwen3ForcedAligner

from sow_aligner import encoder_linears
from sow_aligner.encoder_linears import FUSED_FLAG, fuse_linear_biases
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import speech
from support.engine import cpu_engine


def load(model_dir: Path) -> Qwen3ForcedAligner:
    """The checkpoint in bfloat16, its encoder's biases (zeros in the tiny checkpoint) random, the same each time."""
    aligner = Qwen3ForcedAligner.from_pretrained(str(model_dir), dtype=torch.bfloat16, device_map="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for linear in biased_linears(aligner.model.thinker.audio_tower):
            linear.bias.copy_(0.1 * torch.randn(linear.out_features, generator=generator))
    return aligner


def biased_linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [linear for linear in module.modules() if isinstance(linear, torch.nn.Linear) and linear.bias is not None]


@torch.inference_mode()
def encode(aligner: Qwen3ForcedAligner, seconds: float) -> torch.Tensor:
    """The audio encoder's output for ``seconds`` of speech (windows of 8 s and a shorter last one)."""
    extracted = aligner.processor.feature_extractor(
        speech(seconds), sampling_rate=SAMPLE_RATE, padding=True, truncation=False, return_attention_mask=True,
        return_tensors="pt")
    frames = int(extracted["attention_mask"].sum())
    features = extracted["input_features"][0, :, :frames].to(torch.bfloat16)
    return aligner.model.thinker.audio_tower(features, feature_lens=torch.tensor([frames])).last_hidden_state


@pytest.mark.parametrize("seconds", [3.0, 20.0])
def test_the_encoders_output_is_bit_identical(tiny_model_dir, seconds):
    """Every biased linear of the encoder (its blocks' and the projections after them) runs oneDNN's linear; the
    output equals the unfused encoder's, and is informative (it varies)."""
    stock, fused = load(tiny_model_dir), load(tiny_model_dir)
    assert fuse_linear_biases(fused.model) is True
    linears = biased_linears(fused.model.thinker.audio_tower)
    assert len(linears) == 6 * len(fused.model.thinker.audio_tower.layers) + 2
    assert all("forward" in vars(linear) for linear in linears)
    expected = encode(stock, seconds)
    assert expected.float().std() > 0
    assert torch.equal(encode(fused, seconds), expected)


def test_only_the_encoders_linears_change_and_only_once(tiny_model_dir):
    """The decoder, the timestamp head, other models and the class keep their forward; a second call changes
    nothing."""
    aligner, other = load(tiny_model_dir), load(tiny_model_dir)
    assert fuse_linear_biases(aligner.model.thinker) is True
    tower = aligner.model.thinker.audio_tower
    patched = {linear: linear.forward for linear in biased_linears(tower)}
    assert fuse_linear_biases(tower) is True
    assert {linear: linear.forward for linear in biased_linears(tower)} == patched  # not wrapped twice
    outside = [module for module in aligner.model.thinker.modules()
               if isinstance(module, torch.nn.Linear) and module not in patched]
    assert outside and all("forward" not in vars(module) for module in outside)
    assert all("forward" not in vars(module) for module in other.model.modules() if isinstance(module, torch.nn.Linear))


def test_a_linear_that_differs_is_refused_and_logged(tiny_model_dir, monkeypatch, caplog):
    """A oneDNN linear off by a few bfloat16 steps in one element fails the load check: nothing is patched, the log says
    why, and the encoder runs qwen-asr's linears."""
    stock = encoder_linears.linear_with_bias

    def off_by_a_step(linear, states):
        output = stock(linear, states).clone()
        output[0, 0] = output[0, 0] * (1 + 2 ** -6) + 2 ** -6  # a few bfloat16 steps off, in one element
        return output

    monkeypatch.setattr(encoder_linears, "linear_with_bias", off_by_a_step)
    aligner = load(tiny_model_dir)
    with caplog.at_level(logging.WARNING, logger="sow_aligner"):
        assert fuse_linear_biases(aligner.model) is False
    assert "audio encoder's linears not fused, running addmm: RuntimeError: oneDNN's linear differs" in caplog.text
    assert not any(getattr(linear, FUSED_FLAG, False) or "forward" in vars(linear)
                   for linear in biased_linears(aligner.model))


def test_rejects_a_model_without_audio_encoder():
    with pytest.raises(ValueError, match="Qwen3ASRAudioEncoder"):
        fuse_linear_biases(torch.nn.Linear(4, 4))


@pytest.mark.parametrize(("dtype", "expected"), [("bfloat16", "bias fused"), ("float32", "addmm")])
def test_the_engine_fuses_them_on_cpu_in_bfloat16_only(tiny_model_dir, caplog, dtype, expected):
    """float32 keeps stock's computation exactly; the load line says which linears run."""
    with caplog.at_level(logging.INFO, logger="sow_aligner"):
        engine = cpu_engine(tiny_model_dir, dtype, compile="off")
    linears = biased_linears(engine.aligner.model.thinker.audio_tower)
    assert all(getattr(linear, FUSED_FLAG, False) for linear in linears) == (dtype == "bfloat16")
    assert any(f"encoder linears: {expected}, " in record.getMessage() for record in caplog.records)
    assert engine.align(speech(8.5), ["奇异恩典 何等甘甜", "我罪已得赦免"], "Chinese").unit_start
