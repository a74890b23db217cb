"""The last decoder layer at the timestamp head's rows only (``sow_aligner.last_layer``): the logits and the
timestamp classes of the full layer, on the tiny informative checkpoint (grouped-query attention, as the real
model), in float32 and bfloat16 (the engine's other layers compiled there); the narrowed form runs for one
prompt inside ``at`` and nowhere else."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_asr import Qwen3ForcedAligner
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import apply_rotary_pos_emb

from sow_aligner import last_layer
from sow_aligner.batching import BatchBudget
from sow_aligner.engine import AUDIO_PROMPT, TIMESTAMP_PAIR
from sow_aligner.last_layer import LastLayerAtRows, decoder_layers, narrow_last_layer, rotated
from sow_aligner.timestamp_head import TimestampHead
from support.audio import speech
from support.counting import Counting
from support.engine import assert_timed_alike, cpu_engine, with_qwen_asrs_front_end
from support.logits import assert_same_logits

ZH = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "瞎眼今得看见"]
CALLS = [(speech(20.0), ZH, "Chinese"), (speech(8.5), ZH[:2] * 3, "Chinese")]


def widened(thinker: torch.nn.Module) -> None:
    """The last layer out of its LastLayerAtRows again: the full layer, as before narrowing."""
    thinker.model.layers[-1] = thinker.model.layers[-1].layer


@pytest.fixture
def counting(monkeypatch) -> Counting:
    """``last_layer.narrowed_layer``, its calls counted."""
    counter = Counting(last_layer.narrowed_layer)
    monkeypatch.setattr(last_layer, "narrowed_layer", counter)
    return counter


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_narrowed_last_layer_gives_the_full_layers_logits(tiny_model_dir, dtype):
    aligner = Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=dtype, device_map="cpu")
    thinker = aligner.model.thinker
    thinker.lm_head = TimestampHead(thinker.lm_head)
    units = list("奇异恩典何等甘甜我罪已得赦免")
    prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR
    inputs = aligner.processor(text=[prompt], audio=[speech(6.0)], return_tensors="pt", padding=True).to(dtype)
    positions = inputs["input_ids"][0] == aligner.timestamp_token_id
    with torch.inference_mode():
        with thinker.lm_head.at(positions):
            full = thinker(**inputs, use_cache=False).logits[0]
        last = thinker.model.layers[-1]
        narrow_last_layer(thinker)
        narrow_last_layer(thinker)  # harmless a second time
        assert isinstance(thinker.model.layers[-1], LastLayerAtRows) and thinker.model.layers[-1].layer is last
        assert decoder_layers(thinker)[-1] is last
        with thinker.lm_head.at(positions):
            rows = thinker(**inputs, use_cache=False).logits[0]
            assert thinker.lm_head.narrowed
        assert not thinker.lm_head.narrowed  # reset when at() ends
        outside = thinker(**inputs, use_cache=False).logits[0]
    assert len(set(full.argmax(-1).tolist())) > 3  # the tiny model's classes vary along the text
    assert rows.shape == (int(positions.sum()), full.shape[-1])
    assert_same_logits(full, rows, dtype)
    assert outside.shape[0] == positions.shape[0]  # outside at(): every token's logits, the full layer's


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_engine_times_every_unit_as_with_the_full_last_layer(tiny_model_dir, dtype, counting):
    """float32 runs eager, bfloat16 compiled (config.pbtxt's compile=auto: the other layers, and the last one's
    whole form): both as the full last layer. PyTorch's attention in both forms (the narrowed one attends with
    it; the AMX kernel's rounding is another's: test_amx_attention), and qwen-asr's audio front end."""
    engine = with_qwen_asrs_front_end(cpu_engine(tiny_model_dir, dtype, attention_kernel="sdpa"))
    thinker = engine.aligner.model.thinker
    calls_at_load = counting.calls  # the self-check and warm-up
    narrow = [engine.align(*call) for call in CALLS]
    assert counting.calls - calls_at_load == len(CALLS)
    widened(thinker)
    full = [engine.align(*call) for call in CALLS]
    for mine, theirs in zip(narrow, full):
        assert_timed_alike(mine, theirs)


@pytest.mark.parametrize("calls", [CALLS, [CALLS[0], CALLS[0]]], ids=["padded", "equal-length"])
def test_a_batched_pass_runs_the_full_last_layer(tiny_model_dir, calls, counting):
    """Batched prompts (2-D positions; a padding mask, or none when they are equally long) keep the whole layer:
    the narrowed form is not called, and each span is timed as alone."""
    engine = cpu_engine(tiny_model_dir, "float32", batching="on")
    calls_at_load = counting.calls
    answers = engine.align_many([engine.clip_span(*call) for call in calls], BatchBudget(1e9, 10**12))
    assert counting.calls == calls_at_load
    alone = [engine.align(*call) for call in calls]
    assert counting.calls - calls_at_load == len(calls)
    for mine, theirs in zip(answers, alone):
        assert (mine.unit_start, mine.unit_end) == (theirs.unit_start, theirs.unit_end)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32]), heads=st.integers(1, 4),
       tokens=st.integers(1, 33), half=st.sampled_from([1, 2, 8, 64]), scale=st.sampled_from([1e-3, 1.0, 300.0]),
       seed=st.integers(0, 2**31 - 1))
def test_rotated_is_qwen_asrs_rotary_embedding_bit_for_bit(dtype, heads, tokens, half, scale, seed):
    """``rotated`` (half by half) against ``apply_rotary_pos_emb`` (``rotate_half``), for a query and a key:
    identical in every dtype, at any size of values (each product and each sum is rounded as qwen-asr rounds it)."""
    generator = torch.Generator().manual_seed(seed)

    def random(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).to(dtype)

    query, key = random(1, heads, tokens, 2 * half), random(1, max(1, heads // 2), tokens, 2 * half)
    angles = torch.rand(1, tokens, 2 * half, generator=generator) * 100
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    expected_query, expected_key = apply_rotary_pos_emb(query, key, cos, sin)
    assert torch.equal(rotated(query, cos, sin), expected_query)
    assert torch.equal(rotated(key, cos, sin), expected_key)
