"""scripts/forward_profile.py: FLOP counts agree with torch's counter, and the hooks time every component."""
from __future__ import annotations

import time

import pytest
import torch
from qwen_asr import Qwen3ForcedAligner
from torch.utils.flop_counter import FlopCounterMode

from sow_aligner.encoder_windows import enable_windowed_attention
from sow_aligner.engine import AUDIO_PROMPT, TIMESTAMP_PAIR
from sow_qwen3_tools.forward_profile import (
    COMPONENTS,
    ComponentTimer,
    achieved,
    attention_flops,
    component_flops,
    forward_shape,
)
from support.audio import speech

THINKER = "Qwen3ASRThinkerForConditionalGeneration"
# torch's counter per component: module paths under the thinker (the counter skips CPU flash attention).
COUNTED = {
    "conv front end": ["audio_tower.conv2d1", "audio_tower.conv2d2", "audio_tower.conv2d3", "audio_tower.conv_out"],
    "encoder layers": ["audio_tower.layers", "audio_tower.proj1", "audio_tower.proj2"],
    "decoder layers": ["model.layers"],
    "timestamp head": ["lm_head"],
}


@pytest.fixture(scope="module")
def aligner(tiny_model_dir):
    return Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=torch.float32, device_map="cpu")


def prompt_inputs(aligner, seconds: float, units: list[str]):
    prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR
    return aligner.processor(text=[prompt], audio=[speech(seconds)], return_tensors="pt", padding=True)


def counted(counter: FlopCounterMode, prefixes: list[str]) -> int:
    counts = counter.get_flop_counts()
    names = [name for name in counts if any(
        name == f"{THINKER}.{p}" or (name.startswith(f"{THINKER}.{p}.") and name.count(".") == p.count(".") + 2)
        for p in prefixes)]
    return sum(sum(counts[name].values()) for name in names)


@pytest.mark.parametrize("seconds", [2.5, 12.5])  # a padded last chunk; several attention windows
def test_flops_match_torch_counter(aligner, seconds):
    inputs = prompt_inputs(aligner, seconds, list("奇异恩典何等甘甜"))
    thinker = aligner.model.thinker
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        thinker(**inputs, use_cache=False)
    tokens, frames = inputs["input_ids"].shape[1], int(inputs["feature_attention_mask"].sum())
    shape = forward_shape(thinker.config, frames, tokens, head_rows=tokens, windowed=False)
    assert sum(shape.window_lengths) == int((inputs["input_ids"] == thinker.config.audio_token_id).sum())
    ours, attention = component_flops(thinker.config, shape), attention_flops(thinker.config, shape)
    for name, prefixes in COUNTED.items():
        assert ours[name] - attention.get(name, 0) == counted(counter, prefixes), name


def test_flops_of_the_narrowed_last_layer_match_torch_counter(tiny_model_dir):
    """The engine's last decoder layer at the timestamp tokens only (``sow_aligner.last_layer``): the decoder's
    count is what the layers do, and the timer reports the rows it ran at."""
    from sow_aligner.last_layer import narrow_last_layer
    from sow_aligner.timestamp_head import TimestampHead

    aligner = Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=torch.float32, device_map="cpu")
    thinker = aligner.model.thinker
    thinker.lm_head = TimestampHead(thinker.lm_head)
    narrow_last_layer(thinker)
    inputs = prompt_inputs(aligner, 4.0, list("奇异恩典何等甘甜"))
    positions = inputs["input_ids"][0] == aligner.timestamp_token_id
    timer = ComponentTimer(thinker)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter, timer.timing():
        with thinker.lm_head.at(positions):
            thinker(**inputs, use_cache=False)
    rows = tuple(positions.nonzero()[:, 0].tolist())
    assert timer.last_layer_rows == rows
    tokens, frames = inputs["input_ids"].shape[1], int(inputs["feature_attention_mask"].sum())
    shape = forward_shape(thinker.config, frames, tokens, head_rows=len(rows), windowed=False, last_layer_rows=rows)
    full = forward_shape(thinker.config, frames, tokens, head_rows=len(rows), windowed=False)
    ours, attention = component_flops(thinker.config, shape), attention_flops(thinker.config, shape)
    assert ours["decoder layers"] < component_flops(thinker.config, full)["decoder layers"]
    assert attention["decoder layers"] < attention_flops(thinker.config, full)["decoder layers"]
    assert ours["decoder layers"] - attention["decoder layers"] == counted(counter, COUNTED["decoder layers"])


def test_windows_are_104_embeddings_with_a_shorter_tail(aligner):
    config = aligner.model.thinker.config
    shape = forward_shape(config, mel_frames=30_000, tokens=5000, head_rows=1000, windowed=True)
    assert sum(shape.window_lengths) == 3900 and shape.window_lengths[:2] == (104, 104)
    assert len(shape.window_lengths) == 38 and shape.window_lengths[-1] == 3900 - 37 * 104
    assert forward_shape(config, 30_000, 5000, 1000, windowed=False).window_lengths == (3900,)


def test_timer_covers_every_component(aligner):
    thinker = aligner.model.thinker
    enable_windowed_attention(thinker)
    inputs = prompt_inputs(aligner, 12.5, list("奇异恩典"))
    timer = ComponentTimer(thinker)
    with torch.inference_mode(), timer.timing():
        started = time.perf_counter()
        thinker(**inputs, use_cache=False)
        wall = time.perf_counter() - started
    parts = timer.components()
    assert list(parts) == list(COMPONENTS)
    assert all(parts[name] > 0 for name in COMPONENTS[:4]), parts
    assert parts["other"] >= 0 and sum(parts.values()) <= wall
    assert timer.inputs == {"tokens": inputs["input_ids"].shape[1],
                            "mel_frames": int(inputs["feature_attention_mask"].sum())}
    rates = achieved({"conv front end": 10**9, "encoder layers": 2 * 10**9}, {"conv front end": 0.5, "encoder layers": 1.0})
    assert rates == {"conv front end": 2.0, "encoder layers": 2.0, "forward": 2.0}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_timer_times_the_front_end_the_engine_runs(tiny_model_dir, dtype):
    """qwen-asr's front end (float32) and the fused one (bfloat16 on CPU: no convolution module is called):
    each is timed, inside the audio tower's time, once per pass from the tower's call to conv_out's return."""
    from support.engine import cpu_engine

    engine = cpu_engine(tiny_model_dir, dtype, compile="off")
    assert ("forward" in vars(engine.aligner.model.thinker.audio_tower)) == (dtype == "bfloat16")
    timer = ComponentTimer(engine.aligner.model.thinker)
    with timer.timing():
        engine.align(speech(12.5), ["奇异恩典"], "Chinese")
    parts = timer.components()
    assert 0 < parts["conv front end"] and 0 < parts["encoder layers"], parts
    ticks = iter(range(10**6))
    ticking = ComponentTimer(engine.aligner.model.thinker, clock=lambda: float(next(ticks)))
    with ticking.timing():
        engine.align(speech(2.5), ["奇异"], "Chinese")  # three one-second chunks
    # One span per pass: its start and end readings, with one reading between them (the pass's start, another
    # pre-hook on the tower).
    assert ticking.components()["conv front end"] == 2


def test_timer_covers_the_engines_pass_of_a_song_encoded_apart(tiny_model_dir):
    """The engine runs the audio tower, then the thinker on the embeddings: one pass, every component in it,
    and the inputs read from those two calls."""
    from support.engine import cpu_engine

    engine = cpu_engine(tiny_model_dir, "float32")
    clip = speech(12.5)
    timer = ComponentTimer(engine.aligner.model.thinker)
    with timer.timing():
        started = time.perf_counter()
        engine.align(clip, ["奇异恩典"], "Chinese")
        wall = time.perf_counter() - started
    parts = timer.components()
    assert all(parts[name] > 0 for name in COMPONENTS[:4]), parts
    assert parts["other"] >= 0 and sum(parts.values()) <= wall
    prepared = engine.prepare(engine.clip_span(clip, ["奇异恩典"], "Chinese"))
    assert timer.inputs == {"tokens": prepared.tokens, "mel_frames": len(clip) // 160}
