"""Our AMX attention kernel (``sow_aligner.amx_attention``, bfloat16 on CPU): the decoder's causal attention and
the audio encoder's attention within its windows.

The kernel runs only where the CPU has AMX: on other CPUs (AVX2-only AMD machines, say) these tests skip, as
the engine uses PyTorch's attention there; the last tests (settings and the reasons it is not used) run
everywhere. Against attention in float64, the kernel's error must be PyTorch's own bfloat16 error within one
bfloat16 step, in both modes; on the tiny informative checkpoint, its timestamp logits and classes as close to
exact attention's as PyTorch's attentions get them, in the decoder and in the encoder.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from qwen_asr import Qwen3ForcedAligner
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from sow_aligner import amx_attention
from sow_aligner.amx_attention import (
    AMX_ATTENTION,
    KernelUnavailable,
    causal_attention,
    takes,
    takes_windows,
    windowed_attention,
    windows_kernel,
)
from sow_aligner.batching import BatchBudget
from sow_aligner.decoder_compile import contiguous_heads_sdpa, is_compiled
from sow_aligner.encoder_windows import enable_windowed_attention
from sow_aligner.engine import AUDIO_PROMPT, TIMESTAMP_PAIR
from support.audio import speech
from support.counting import Counting
from support.engine import cpu_engine

ZH = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "瞎眼今得看见"]
CALLS = [(speech(20.0), ZH, "Chinese"), (speech(8.5), ZH[:2] * 3, "Chinese")]

needs_amx = pytest.mark.skipif(not amx_attention.cpu_has_amx(), reason="this CPU has no AMX: the engine uses "
                               "PyTorch's attention here (the kernel's tests run on CPUs with AMX)")


def heads(count: int, tokens: int, size: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """(1, count, tokens, size) bfloat16, laid out as the projections leave them: (1, tokens, count, size)."""
    return (torch.randn(1, tokens, count, size, generator=generator) * scale).bfloat16().transpose(1, 2)


def exact(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention in float64, (1, tokens, heads, size)."""
    group = query.shape[1] // key.shape[1]
    return F.scaled_dot_product_attention(
        query.double(), key.double().repeat_interleave(group, 1), value.double().repeat_interleave(group, 1),
        is_causal=True, scale=scale).transpose(1, 2)


def pytorch(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True,
                                          scale=scale).transpose(1, 2)


def assert_as_close_as_pytorch(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    scale = query.shape[-1] ** -0.5
    truth = exact(query, key, value, scale)
    mine = causal_attention(query, key, value, scale)
    assert mine.shape == truth.shape and mine.dtype == torch.bfloat16 and mine.is_contiguous()
    theirs_error = (pytorch(query, key, value, scale).double() - truth).abs().max().item()
    mine_error = (mine.double() - truth).abs().max().item()
    step = truth.abs().max().item() * 2.0 ** -8  # one bfloat16 step at the largest output
    assert mine_error <= theirs_error + step, (mine_error, theirs_error, step)


@needs_amx
@pytest.mark.parametrize(("query_heads", "key_heads", "tokens", "size"), [
    (2, 1, 1, 16), (4, 2, 37, 16), (2, 2, 65, 32), (6, 2, 129, 48), (4, 4, 300, 64), (16, 8, 700, 128),
    (16, 8, 1100, 128),
])
def test_the_kernel_is_as_close_to_exact_attention_as_pytorch(query_heads, key_heads, tokens, size):
    """Head sizes padded (16, 48) and not, prompts shorter than a block and ending inside one, one or several
    key blocks, grouped-query attention of 1, 2 and 3 query heads per key head."""
    generator = torch.Generator().manual_seed(tokens)
    query, key, value = (heads(count, tokens, size, generator) for count in (query_heads, key_heads, key_heads))
    assert_as_close_as_pytorch(query, key, value)


@needs_amx
def test_scores_that_rise_past_the_first_block_move_the_reference():
    """Keys whose scores grow along the prompt by far more than 2^8 per block: later blocks exceed each row's
    reference, which moves up (the sums so far scaled down) without losing the earlier keys."""
    generator = torch.Generator().manual_seed(1)
    tokens, size = 900, 128
    query = heads(4, tokens, size, generator, 0.2) + 2.0
    key = heads(2, tokens, size, generator, 0.2) + torch.linspace(0.0, 2.5, tokens)[None, None, :, None]
    value = heads(2, tokens, size, generator)
    assert_as_close_as_pytorch(query, key.bfloat16(), value)


@needs_amx
def test_large_scores_stay_finite_and_exact():
    """Scores of several hundred: the weights of all but a few keys underflow, none overflow."""
    generator = torch.Generator().manual_seed(2)
    query, key, value = heads(4, 500, 64, generator, 8.0), heads(2, 500, 64, generator, 8.0), heads(2, 500, 64, generator)
    out = causal_attention(query, key, value, 64 ** -0.5)
    assert torch.isfinite(out.float()).all()
    assert_as_close_as_pytorch(query, key, value)


@needs_amx
def test_the_projections_layout_and_a_contiguous_copy_give_the_same_output():
    generator = torch.Generator().manual_seed(3)
    query, key, value = heads(4, 333, 128, generator), heads(2, 333, 128, generator), heads(2, 333, 128, generator)
    assert not query.is_contiguous()
    strided = causal_attention(query, key, value, 0.1)
    contiguous = causal_attention(query.contiguous(), key.contiguous(), value.contiguous(), 0.1)
    assert torch.equal(strided, contiguous)


def windows_exact(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, windows: int,
                  scale: float) -> torch.Tensor:
    """Attention within each of ``windows`` equal windows of (tokens, heads, size) tensors, in float64."""
    tokens, count, size = query.shape
    per_window = [tensor.double().reshape(windows, -1, count, size).transpose(1, 2) for tensor in (query, key, value)]
    return F.scaled_dot_product_attention(*per_window, scale=scale).transpose(1, 2).reshape(tokens, count, size)


def windows_pytorch(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, windows: int,
                    scale: float) -> torch.Tensor:
    """The same with PyTorch's kernel on the inputs' dtype, as ``encoder_windows`` runs it without ours."""
    tokens, count, size = query.shape
    per_window = [tensor.reshape(windows, -1, count, size).transpose(1, 2) for tensor in (query, key, value)]
    return F.scaled_dot_product_attention(*per_window, scale=scale).transpose(1, 2).reshape(tokens, count, size)


def projections(tokens: int, count: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Query, key and value (tokens, count, size) bfloat16, as the encoder's three projections leave them."""
    return [(torch.randn(tokens, count * size, generator=generator)).bfloat16().reshape(tokens, count, size)
            for _ in range(3)]


@needs_amx
@pytest.mark.parametrize(("windows", "length", "count", "size"), [
    (1, 1, 2, 16), (3, 37, 4, 16), (2, 65, 2, 32), (15, 104, 16, 64), (2, 300, 2, 48), (4, 257, 3, 128),
])
def test_the_windowed_kernel_is_as_close_to_exact_attention_as_pytorch(windows, length, count, size):
    """The encoder's mode: every token attends to all keys of its own window and none of another's. Windows
    shorter than a block and ending inside one, several key blocks (300), the encoder's 15 windows of 104 tokens
    in 16 heads of 64, padded head sizes (16, 48)."""
    generator = torch.Generator().manual_seed(windows * length)
    query, key, value = projections(windows * length, count, size, generator)
    scale = size ** -0.5
    truth = windows_exact(query, key, value, windows, scale)
    mine = windowed_attention(query, key, value, windows, scale)
    assert mine.shape == truth.shape and mine.dtype == torch.bfloat16 and mine.is_contiguous()
    theirs_error = (windows_pytorch(query, key, value, windows, scale).double() - truth).abs().max().item()
    mine_error = (mine.double() - truth).abs().max().item()
    step = truth.abs().max().item() * 2.0 ** -8
    assert mine_error <= theirs_error + step, (mine_error, theirs_error, step)


@needs_amx
def test_the_windowed_kernel_reads_slices_of_one_projection_in_place():
    """Query, key and value as column slices of one (tokens, 3 x heads x size) tensor (rows 3x longer than a
    head's): the same output bit for bit as contiguous copies, and windows_kernel takes them as they are."""
    generator = torch.Generator().manual_seed(5)
    together = torch.randn(3 * 50, 3 * 4 * 32, generator=generator).bfloat16()
    query, key, value = (together[:, part * 128:(part + 1) * 128].reshape(150, 4, 32) for part in range(3))
    assert not query.is_contiguous() and takes_windows(query, key, value)
    in_place = windows_kernel(query, key, value, 3, 0.2)
    assert torch.equal(in_place, windowed_attention(query.contiguous(), key.contiguous(), value.contiguous(), 3, 0.2))


def test_windows_kernel_declines_what_the_kernel_does_not_take():
    """float32, a head size that is no multiple of 16, key heads fewer than query heads: None, so that
    encoder_windows runs PyTorch's attention; tokens that do not make whole windows: a ValueError naming them."""
    generator = torch.Generator().manual_seed(6)
    bfloat16 = projections(40, 2, 32, generator)
    cases = [[tensor.float() for tensor in bfloat16], projections(40, 2, 24, generator),
             [bfloat16[0], bfloat16[1][:, :1], bfloat16[2][:, :1]]]
    for query, key, value in cases:
        assert not takes_windows(query, key, value)
        assert windows_kernel(query, key, value, 2, 0.1) is None
    with pytest.raises(ValueError, match="40 tokens do not make 3 windows"):
        windowed_attention(*bfloat16, 3, 0.1)


class Attention(torch.nn.Module):
    """What the attention interface reads of a decoder layer's attention module: 2 query heads per key head."""
    num_key_value_groups = 2
    is_causal = True
    scaling = 128 ** -0.5


@needs_amx
def test_what_the_kernel_does_not_take_goes_to_pytorch():
    """A padding mask, a batch of two, float32, a head size that is no multiple of 16: contiguous_heads_sdpa's
    answer, bit for bit; one bfloat16 prompt without a mask: the kernel's."""
    generator = torch.Generator().manual_seed(4)
    module = Attention()

    def qkv(batch: int, size: int, dtype: torch.dtype) -> list[torch.Tensor]:
        return [torch.randn(batch, 50, count, size, generator=generator).to(dtype).transpose(1, 2)
                for count in (4, 2, 2)]

    mask = torch.ones(1, 1, 50, 50, dtype=torch.bool).tril()
    cases = [(qkv(1, 128, torch.bfloat16), mask), (qkv(2, 128, torch.bfloat16), None),
             (qkv(1, 128, torch.float32), None), (qkv(1, 24, torch.bfloat16), None)]
    for (query, key, value), attention_mask in cases:
        assert attention_mask is not None or not takes(query, key, value)
        mine, _ = amx_attention.amx_attention(module, query, key, value, attention_mask, scaling=0.1)
        theirs, _ = contiguous_heads_sdpa(module, query, key, value, attention_mask, scaling=0.1)
        assert torch.equal(mine, theirs)
    query, key, value = qkv(1, 128, torch.bfloat16)
    mine, _ = amx_attention.amx_attention(module, query, key, value, None, scaling=0.1)
    assert torch.equal(mine, causal_attention(query, key, value, 0.1))


CAUSAL_ARGUMENT = -2  # sow_attention's causal flag, among its arguments


@pytest.fixture
def counting(monkeypatch) -> Counting:
    """The built kernel (``amx_attention._kernel``), its causal calls (the decoder's) counted."""
    counter = Counting(amx_attention.build(), where=lambda *args: bool(args[CAUSAL_ARGUMENT]))
    monkeypatch.setattr(amx_attention, "_kernel", counter)
    return counter


@pytest.fixture
def counting_windows(monkeypatch) -> Counting:
    """``amx_attention.windowed_attention`` (the encoder's), its calls counted."""
    counter = Counting(amx_attention.windowed_attention)
    monkeypatch.setattr(amx_attention, "windowed_attention", counter)
    return counter


def exact_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention interface: causal attention in float64, rounded once to the inputs' dtype."""
    assert attention_mask is None
    return exact(query, key, value, scaling).to(query.dtype).contiguous(), None


EXACT = "test_exact_attention"
AttentionInterface.register(EXACT, exact_attention)
AttentionMaskInterface.register(EXACT, sdpa_mask)


@needs_amx
def test_on_the_informative_checkpoint_the_kernel_is_as_close_to_exact_attention_as_pytorch(tiny_model_dir,
                                                                                          monkeypatch):
    """The thinker in bfloat16 with each attention: the kernel, PyTorch's two (sdpa and eager), and exact
    attention (float64, rounded once).

    Each of the kernel's calls is within one bfloat16 step of exact attention's output, as PyTorch's kernel on the
    same activations. The timestamp logits then move from exact attention's by about as much as under PyTorch's
    attentions: this checkpoint's head scores class k as 2k*s(h) - k^2, logits in the thousands where bfloat16
    steps by 8, so neighbouring classes tie within rounding and PyTorch's sdpa and eager attentions already
    choose other classes than exact attention in a few slots. Held: the kernel's mean logit deviation within 1.5x
    of PyTorch's larger one, and at most one slot more of another class (a mask that lets each query see one
    key too many doubles the deviation). On the real-size model none of 1,600 slots moved against PyTorch's
    kernel (docs/benchmarks.md)."""
    aligner = Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16, device_map="cpu")
    thinker = aligner.model.thinker
    inputs, positions = informative_inputs(aligner)
    calls = []

    def recorded(query, key, value, scale):
        calls.append((query, key, value))
        return causal_attention(query, key, value, scale)

    monkeypatch.setattr(amx_attention, "causal_attention", recorded)
    logits = {}
    with torch.inference_mode():
        for implementation in (EXACT, "sdpa", "eager", AMX_ATTENTION):
            thinker.model.config._attn_implementation = implementation
            logits[implementation] = thinker(**inputs, use_cache=False).logits[0, positions].float()
    assert len(calls) == len(thinker.model.layers)
    for query, key, value in calls:
        assert_as_close_as_pytorch(query, key, value)
    assert_kernel_as_close_to_exact_as_pytorch(logits)


def informative_inputs(aligner: Qwen3ForcedAligner):
    """The processor's inputs (bfloat16) for 20 s of speech and 28 units, and where the timestamp slots are."""
    units = list("奇异恩典何等甘甜我罪已得赦免前我失丧今被寻回瞎眼今得看见")
    prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR
    inputs = aligner.processor(text=[prompt], audio=[speech(20.0)], return_tensors="pt", padding=True)
    return inputs.to(torch.bfloat16), inputs["input_ids"][0] == aligner.timestamp_token_id


def assert_kernel_as_close_to_exact_as_pytorch(logits: dict[str, torch.Tensor]) -> None:
    """The timestamp logits under the kernel (AMX_ATTENTION) deviate from exact attention's (EXACT) by at most
    1.5x the larger mean deviation of PyTorch's sdpa and eager, and choose another class in at most one slot
    more than they do."""
    truth = logits.pop(EXACT)
    assert len(set(truth.argmax(-1).tolist())) > 3  # informative: the classes vary along the text
    deviation = {name: (values - truth).abs().mean().item() for name, values in logits.items()}
    moved = {name: int((values.argmax(-1) != truth.argmax(-1)).sum()) for name, values in logits.items()}
    theirs = max(deviation["sdpa"], deviation["eager"])
    assert 0 < deviation[AMX_ATTENTION] <= 1.5 * theirs, deviation
    assert moved[AMX_ATTENTION] <= max(moved["sdpa"], moved["eager"]) + 1, moved


@needs_amx
def test_in_the_encoders_windows_the_kernel_is_as_close_to_exact_attention_as_pytorch(tiny_model_dir, monkeypatch):
    """The same comparison with the audio encoder's windowed attention as the one that changes (the decoder on
    PyTorch's sdpa throughout): exact attention within windows (float64, rounded once), PyTorch's sdpa and
    eager, and the kernel, each kernel call within one bfloat16 step of exact attention as PyTorch's is. 20 s of
    speech are 3 windows of the encoder, in two groups (two of 8 s, one of 4 s)."""
    calls = []

    def recorded(query, key, value, windows, scale):
        calls.append((query, key, value, windows, scale))
        return windowed_attention(query, key, value, windows, scale)

    def exact_windows(query, key, value, windows, scale):
        return windows_exact(query, key, value, windows, scale).to(query.dtype)

    monkeypatch.setattr(amx_attention, "windowed_attention", recorded)
    logits = {}
    for name, implementation, kernel in (
            (EXACT, "sdpa", exact_windows), ("sdpa", "sdpa", None), ("eager", "eager", None),
            (AMX_ATTENTION, "sdpa", amx_attention.windows_kernel)):
        aligner = Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16, device_map="cpu")
        aligner.model.thinker.audio_tower.config._attn_implementation = implementation
        assert enable_windowed_attention(aligner.model, kernel)
        inputs, positions = informative_inputs(aligner)
        with torch.inference_mode():
            logits[name] = aligner.model.thinker(**inputs, use_cache=False).logits[0, positions].float()
    encoder_layers = len(aligner.model.thinker.audio_tower.layers)
    assert [call[3] for call in calls] == [2, 1] * encoder_layers
    for query, key, value, windows, scale in calls:
        truth = windows_exact(query, key, value, windows, scale)
        theirs_error = (windows_pytorch(query, key, value, windows, scale).double() - truth).abs().max().item()
        mine_error = (windowed_attention(query, key, value, windows, scale).double() - truth).abs().max().item()
        assert mine_error <= theirs_error + truth.abs().max().item() * 2.0 ** -8
    assert_kernel_as_close_to_exact_as_pytorch(logits)


@needs_amx
def test_the_engine_runs_the_kernel_in_every_decoder_layer_but_the_narrowed_last(tiny_model_dir, counting,
                                                                               counting_windows):
    """As config.pbtxt loads it in bfloat16 on CPU, compiled: the narrowed last layer attends from the timestamp
    rows only, with PyTorch's kernel. The audio encoder's layers run it too, once per group of equally long
    windows: 20 s are two windows of 8 s and one of 4 s, 8.5 s one of 8 s and one of 0.5 s."""
    engine = cpu_engine(tiny_model_dir, "bfloat16")
    thinker = engine.aligner.model.thinker
    assert thinker.model.config._attn_implementation == AMX_ATTENTION and is_compiled(thinker)
    calls_at_load, windows_at_load = counting.calls, counting_windows.calls
    answers = [engine.align(*call) for call in CALLS]
    assert counting.calls - calls_at_load == len(CALLS) * (len(thinker.model.layers) - 1)
    assert counting_windows.calls - windows_at_load == len(CALLS) * 2 * len(thinker.audio_tower.layers)
    assert all(len(set(answer.unit_start)) >= 3 for answer in answers)


@needs_amx
@pytest.mark.parametrize("calls", [CALLS, [CALLS[0], CALLS[0]]], ids=["padded", "equal-length"])
def test_a_batched_pass_runs_pytorchs_attention(tiny_model_dir, calls, counting):
    """Prompts in one batch (a padding mask, or none when they are equally long) go to PyTorch's attention; each
    alone, to the kernel."""
    engine = cpu_engine(tiny_model_dir, "bfloat16", batching="on")
    calls_at_load = counting.calls
    answers = engine.align_many([engine.clip_span(*call) for call in calls], BatchBudget(1e9, 10**12))
    assert counting.calls == calls_at_load
    assert all(not isinstance(answer, Exception) and answer.unit_start for answer in answers)
    for call in calls:
        engine.align(*call)
    assert counting.calls - calls_at_load == len(calls) * (len(engine.aligner.model.thinker.model.layers) - 1)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_float32_and_the_sdpa_setting_keep_pytorchs_attention(tiny_model_dir, dtype, counting_windows):
    changes = {} if dtype == "float32" else {"attention_kernel": "sdpa"}
    engine = cpu_engine(tiny_model_dir, dtype, **changes)
    assert engine.aligner.model.thinker.model.config._attn_implementation != AMX_ATTENTION
    assert engine.align(*CALLS[0]).unit_start and counting_windows.calls == 0


def test_the_log_says_why_the_kernel_is_not_used(tiny_model_dir, monkeypatch, caplog):
    """No AMX (stood in for on CPUs that have it: the CPU cannot be changed here), no compiler, a compiler that
    fails: the model loads on PyTorch's attention and the log says which."""
    monkeypatch.setattr(amx_attention, "_kernel", None)
    monkeypatch.setattr(amx_attention, "cpu_has_amx", lambda: False)
    with pytest.raises(KernelUnavailable, match="no AMX"):
        amx_attention.build()
    monkeypatch.setattr(amx_attention, "cpu_has_amx", lambda: True)
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(KernelUnavailable, match=r"no C\+\+ compiler \(/nonexistent/g\+\+\)"):
        amx_attention.build()
    monkeypatch.setenv("CXX", "false")
    with pytest.raises(KernelUnavailable, match="false failed to build amx_attention.cpp"):
        amx_attention.build()
    with caplog.at_level(logging.INFO, logger="sow_aligner"):
        engine = cpu_engine(tiny_model_dir, "bfloat16", compile="off")
    assert engine.aligner.model.thinker.model.config._attn_implementation != AMX_ATTENTION
    messages = [record.getMessage() for record in caplog.records]
    assert any("the AMX kernel is not used: false failed to build" in message for message in messages), messages
    assert any("attention kernel: PyTorch's" in message and "loaded" in message for message in messages), messages
    assert engine.align(*CALLS[1]).unit_start


@needs_amx
def test_a_kernel_whose_windows_fail_the_load_check_is_not_used(tiny_model_dir, monkeypatch, caplog):
    """enable() checks the encoder's mode too, on the encoder's head shape: windows that disagree with PyTorch's
    attention keep PyTorch's attention everywhere, and the log says so."""
    monkeypatch.setattr(amx_attention, "windowed_attention", lambda query, *_: torch.zeros_like(query))
    with caplog.at_level(logging.INFO, logger="sow_aligner"):
        engine = cpu_engine(tiny_model_dir, "bfloat16", compile="off")
    assert engine.aligner.model.thinker.model.config._attn_implementation != AMX_ATTENTION
    messages = [record.getMessage() for record in caplog.records]
    assert any("the AMX kernel is not used" in message and "in 2 windows" in message for message in messages), \
        messages
    assert engine.align(*CALLS[0]).unit_start
