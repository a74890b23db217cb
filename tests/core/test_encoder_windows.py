"""sow_aligner.encoder_windows: the CPU audio encoder attends within 8 s windows.

The checks run the tiny real-architecture checkpoint (scripts/make_tiny_model.py)
and compare the adapted encoder with qwen-asr's own, unpatched code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_asr import Qwen3ForcedAligner
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import Qwen3ASRAudioAttention

from sow_aligner.encoder_windows import enable_windowed_attention
from sow_qwen3_contract.tensors import SAMPLE_RATE

WINDOW_EMBEDDINGS = 104  # n_window_infer 800 mel frames = 8 s -> 104 embeddings after the CNN
ATOL, RTOL = 1e-5, 1e-4  # float32 rounding: batching windows reorders sums
UNITS = "amazing grace how sweet the sound that saved a wretch like me"


def load(model_dir: Path, attn_implementation: str = "sdpa") -> Qwen3ForcedAligner:
    aligner = Qwen3ForcedAligner.from_pretrained(str(model_dir), dtype=torch.float32, device_map="cpu")
    # from_pretrained(attn_implementation=...) does not reach qwen-asr's sub-configs; this does.
    aligner.model.set_attn_implementation(attn_implementation)
    assert aligner.model.thinker.audio_tower.config._attn_implementation == attn_implementation
    return aligner


def load_windowed(model_dir: Path, attn_implementation: str = "sdpa") -> Qwen3ForcedAligner:
    aligner = load(model_dir, attn_implementation)
    assert enable_windowed_attention(aligner.model) is True
    return aligner


@pytest.fixture(scope="module")
def stock(tiny_model_dir: Path) -> Qwen3ForcedAligner:
    return load(tiny_model_dir)


@pytest.fixture(scope="module")
def windowed(tiny_model_dir: Path) -> Qwen3ForcedAligner:
    return load_windowed(tiny_model_dir)


def clip(seconds: float) -> np.ndarray:
    """Deterministic 16 kHz audio whose content changes from window to window."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t) * (np.sin(2 * np.pi * t / 7) > 0)
    return (tone + np.random.default_rng(1).normal(0.0, 0.02, t.size)).astype(np.float32)


def mel(aligner: Qwen3ForcedAligner, *seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The audio encoder's arguments for clips of ``seconds``, concatenated as its forward takes them."""
    features, lengths = [], []
    for length in seconds:
        extracted = aligner.processor.feature_extractor(
            clip(length), sampling_rate=SAMPLE_RATE, padding=True, truncation=False,
            return_attention_mask=True, return_tensors="pt",
        )
        frames = int(extracted["attention_mask"].sum())
        features.append(extracted["input_features"][0, :, :frames])
        lengths.append(frames)
    return torch.cat(features, dim=1), torch.tensor(lengths)


@torch.inference_mode()
def encode(aligner: Qwen3ForcedAligner, features: torch.Tensor, lengths: torch.Tensor):
    """Encoder output, plus the hidden states and window bounds its first layer received."""
    encoder = aligner.model.thinker.audio_tower
    seen = {}

    def keep(_module, args) -> None:
        seen["args"] = args

    hook = encoder.layers[0].register_forward_pre_hook(keep)
    try:
        output = encoder(features, feature_lens=lengths).last_hidden_state
    finally:
        hook.remove()
    hidden, cu_seqlens = seen["args"]
    return output, hidden, cu_seqlens


@torch.inference_mode()
def per_window_reference(aligner: Qwen3ForcedAligner, hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """By hand: each window alone through every stock layer (one window, so no mask), then the head."""
    encoder = aligner.model.thinker.audio_tower
    windows = []
    for start, stop in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        states = hidden[start:stop]
        for layer in encoder.layers:
            states = layer(states, torch.tensor([0, stop - start], dtype=torch.int32))[0]
        windows.append(states)
    return encoder.proj2(encoder.act(encoder.proj1(encoder.ln_post(torch.cat(windows)))))


@pytest.mark.parametrize("seconds", [0.5, 3.0, 8.0])
def test_one_window_is_bit_identical_to_stock(stock, windowed, seconds):
    features, lengths = mel(stock, seconds)
    expected, _, cu_seqlens = encode(stock, features, lengths)
    got, _, _ = encode(windowed, features, lengths)
    assert len(cu_seqlens) == 2  # one window: the case that must not change
    assert torch.equal(got, expected)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("seconds", [(20.0,), (8.5,), (20.0, 11.0)])
def test_several_windows_match_per_window_reference(tiny_model_dir, attn_implementation, seconds):
    stock = load(tiny_model_dir, attn_implementation)
    windowed = load_windowed(tiny_model_dir, attn_implementation)
    features, lengths = mel(stock, *seconds)
    full, hidden, cu_seqlens = encode(stock, features, lengths)
    got, _, _ = encode(windowed, features, lengths)
    reference = per_window_reference(stock, hidden, cu_seqlens)
    assert len(cu_seqlens) > 2
    torch.testing.assert_close(got, reference, atol=ATOL, rtol=RTOL)
    # Not vacuous: the stock encoder (attention across the whole clip) is farther off than the tolerance.
    assert (full - reference).abs().max() > 10 * ATOL
    assert not torch.allclose(full, reference, atol=ATOL, rtol=RTOL)


def test_eager_model_keeps_eager_kernel(tiny_model_dir, monkeypatch):
    """The adapter runs the model's configured attention, not sdpa behind its back."""
    windowed = load_windowed(tiny_model_dir, "eager")

    def forbidden(*_args, **_kwargs):
        raise AssertionError("sdpa called on an eager model")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", forbidden)
    features, lengths = mel(windowed, 20.0)
    output, _, cu_seqlens = encode(windowed, features, lengths)
    assert len(cu_seqlens) > 2 and torch.isfinite(output).all()


def test_window_bounds_are_the_encoders(stock):
    """The windows the adapter honours are qwen-asr's 8 s ones, per clip."""
    features, lengths = mel(stock, 20.0, 11.0)
    _, _, cu_seqlens = encode(stock, features, lengths)
    assert torch.diff(cu_seqlens).tolist() == [104, 104, 52, 104, 39]


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(min_value=1, max_value=9), min_size=2, max_size=8), seed=st.integers(0, 2**16))
def test_attention_equals_stock_attention_per_window(stock, windowed, lengths, seed):
    """Any window lengths, repeated or not: each window's output is stock attention on that window alone."""
    attention = windowed.model.thinker.audio_tower.layers[0].self_attn
    reference = stock.model.thinker.audio_tower.layers[0].self_attn
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(sum(lengths), attention.embed_dim, generator=generator)
    cu_seqlens = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
    with torch.inference_mode():
        got = attention(hidden_states=hidden, cu_seqlens=cu_seqlens)
        expected = torch.cat([
            reference(hidden_states=hidden[start:stop], cu_seqlens=torch.tensor([0, stop - start], dtype=torch.int32))
            for start, stop in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())
        ])
        full = reference(hidden_states=hidden, cu_seqlens=cu_seqlens)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    assert not torch.allclose(full, expected, atol=ATOL, rtol=RTOL)


def test_a_kernel_runs_each_group_of_windows_it_takes(tiny_model_dir, stock):
    """With a kernel (here PyTorch's sdpa per window, by hand), every group of equally long windows goes to it
    once, with the projections as (tokens, heads, head size) and the group's window count; its answer is the
    layer's. A kernel that answers None leaves the group to the model's own attention, bit for bit."""
    calls = []

    def kernel(query, key, value, windows, scale):
        calls.append((tuple(query.shape), windows))
        tokens, heads, size = query.shape
        per_window = [tensor.reshape(windows, -1, heads, size).transpose(1, 2) for tensor in (query, key, value)]
        output = torch.nn.functional.scaled_dot_product_attention(*per_window, scale=scale)
        return output.transpose(1, 2).reshape(tokens, heads, size)

    def declining(*_args):
        calls.append("declined")
        return None

    by_kernel, declined = load(tiny_model_dir), load(tiny_model_dir)
    assert enable_windowed_attention(by_kernel.model, kernel)
    assert enable_windowed_attention(declined.model, declining)
    windowed = load_windowed(tiny_model_dir)
    features, lengths = mel(stock, 20.0, 11.0)  # windows of 104, 104, 52, 104, 39 embeddings
    expected, _, _ = encode(windowed, features, lengths)
    got, _, _ = encode(by_kernel, features, lengths)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    heads = by_kernel.model.thinker.audio_tower.layers[0].self_attn.num_heads
    size = by_kernel.model.thinker.audio_tower.layers[0].self_attn.head_dim
    groups = [((208, heads, size), 2), ((52, heads, size), 1), ((104, heads, size), 1), ((39, heads, size), 1)]
    assert calls == groups * len(by_kernel.model.thinker.audio_tower.layers)
    calls.clear()
    assert torch.equal(encode(declined, features, lengths)[0], expected)
    assert calls == ["declined"] * 4 * len(declined.model.thinker.audio_tower.layers)


def test_explicit_mask_is_honoured(stock, windowed):
    """A caller's own attention_mask goes to the stock attention unchanged."""
    attention = windowed.model.thinker.audio_tower.layers[0].self_attn
    reference = stock.model.thinker.audio_tower.layers[0].self_attn
    hidden = torch.randn(12, attention.embed_dim, generator=torch.Generator().manual_seed(0))
    cu_seqlens = torch.tensor([0, 5, 12], dtype=torch.int32)
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., 3:] = torch.finfo(torch.float32).min  # everyone sees only the first 3 positions
    with torch.inference_mode():
        got = attention(hidden_states=hidden, cu_seqlens=cu_seqlens, attention_mask=mask)
        expected = reference(hidden_states=hidden, cu_seqlens=cu_seqlens, attention_mask=mask)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("path", ["model", "model.thinker", "model.thinker.audio_tower"])
def test_enable_accepts_any_module_holding_the_encoder_and_is_idempotent(tiny_model_dir, path):
    aligner = load(tiny_model_dir)
    target = aligner
    for name in path.split("."):
        target = getattr(target, name)
    attentions = [m for m in aligner.model.modules() if isinstance(m, Qwen3ASRAudioAttention)]
    assert enable_windowed_attention(target) is True
    patched = [attention.forward for attention in attentions]
    assert all("forward" in attention.__dict__ for attention in attentions)
    assert enable_windowed_attention(target) is False
    assert [attention.forward for attention in attentions] == patched  # not wrapped twice


def test_other_instances_and_the_class_are_untouched(tiny_model_dir, windowed):
    other = load(tiny_model_dir)
    attentions = [m for m in other.model.modules() if isinstance(m, Qwen3ASRAudioAttention)]
    assert attentions and all("forward" not in attention.__dict__ for attention in attentions)
    assert Qwen3ASRAudioAttention.forward.__module__.startswith("qwen_asr.")


def test_noop_under_flash_attention_2(tiny_model_dir):
    aligner = load(tiny_model_dir)
    aligner.model.thinker.audio_tower.config._attn_implementation = "flash_attention_2"
    assert enable_windowed_attention(aligner.model) is False
    attentions = [m for m in aligner.model.modules() if isinstance(m, Qwen3ASRAudioAttention)]
    assert attentions and all("forward" not in attention.__dict__ for attention in attentions)


def test_rejects_a_model_without_audio_encoder():
    with pytest.raises(ValueError, match="Qwen3ASRAudioEncoder"):
        enable_windowed_attention(torch.nn.Linear(4, 4))


def test_align_on_a_short_clip_matches_stock(stock, windowed):
    audio = (clip(6.0), SAMPLE_RATE)
    assert windowed.align(audio, UNITS, "English") == stock.align(audio, UNITS, "English")


def test_align_on_a_long_clip_uses_windowed_features(stock, windowed):
    audio = (clip(20.0), SAMPLE_RATE)
    features = {}

    def keeper(name: str):
        def keep(_module, _args, output) -> None:
            features[name] = output.last_hidden_state
        return keep

    hooks = [
        aligner.model.thinker.audio_tower.register_forward_hook(keeper(name))
        for name, aligner in (("stock", stock), ("windowed", windowed))
    ]
    try:
        stock.align(audio, UNITS, "English")
        (result,) = windowed.align(audio, UNITS, "English")
    finally:
        for hook in hooks:
            hook.remove()
    assert [item.text for item in result] == UNITS.split()
    starts = [item.start_time for item in result]
    assert starts == sorted(starts)
    assert all(item.start_time <= item.end_time for item in result)
    assert not torch.allclose(features["windowed"], features["stock"], atol=ATOL, rtol=RTOL)
