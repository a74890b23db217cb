"""The engine's channels-last convolutions (CPU, bfloat16): the audio encoder's front end in oneDNN's own
layout changes no timestamp class against the default layout, on the tiny informative checkpoint."""
from __future__ import annotations

import torch

from sow_aligner.engine import AlignmentEngine
from support.audio import speech
from support.engine import assert_timed_alike, cpu_engine, with_qwen_asrs_front_end

ZH = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "瞎眼今得看见"]


def convolutions(engine: AlignmentEngine) -> list[torch.nn.Conv2d]:
    tower = engine.aligner.model.thinker.audio_tower
    return [module for module in tower.modules() if isinstance(module, torch.nn.Conv2d)]


def channels_last(convolution: torch.nn.Conv2d) -> bool:
    """Whether the weight is laid out channels-last (with one input channel both layouts are the same)."""
    weight = convolution.weight
    if weight.shape[1] == 1:
        return weight.is_contiguous(memory_format=torch.channels_last)
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_bfloat16_on_cpu_runs_the_convolutions_channels_last_and_keeps_every_timestamp_class(tiny_model_dir):
    # PyTorch's attention in the decoder, on every CPU: on this checkpoint the AMX kernel's rounding leaves one
    # call with fewer distinct times than assert_timed_alike needs to call it informative (test_amx_attention).
    # qwen-asr's front end, convolution then GELU, on both sides: the GELU inside oneDNN's convolution rounds
    # differently in the two layouts.
    engine = with_qwen_asrs_front_end(cpu_engine(tiny_model_dir, "bfloat16", attention_kernel="sdpa"))
    assert convolutions(engine) and all(map(channels_last, convolutions(engine)))
    calls = [(speech(20.0), ZH, "Chinese"), (speech(8.5), ZH[:2] * 3, "Chinese")]
    fast = [engine.align(*call) for call in calls]
    for convolution in convolutions(engine):  # back to the default layout: what stock qwen-asr runs
        convolution.to(memory_format=torch.contiguous_format)
    default = [engine.align(*call) for call in calls]
    for mine, theirs in zip(fast, default):
        assert_timed_alike(mine, theirs)


def test_float32_keeps_the_default_layout(tiny_model_dir):
    # In float32 oneDNN's channels-last kernels round differently (2e-7 on the real-size front end), and the
    # float32 path is held exactly to stock qwen-asr: it keeps stock's layout.
    assert not any(channels_last(convolution) for convolution in convolutions(cpu_engine(tiny_model_dir, "float32"))
                   if convolution.weight.shape[1] > 1)
