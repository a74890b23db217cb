"""One encoding per song (``sow_aligner.engine.EncodedSong``), in-process on CPU with the tiny informative
checkpoint: the whole clip's pass is the thinker's own forward pass bit for bit; a long song's audio encoder
runs once for all its windows and re-aligned runs; a part takes the right slice of the song's embeddings and
its times count from the part's start; and the song pipeline's guarantees still hold on the real engine.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from sow_aligner.engine import AUDIO_PROMPT, TIMESTAMP_PAIR, AlignmentEngine
from sow_aligner.evidence import judge
from sow_aligner.request import align_request
from sow_qwen3_contract.quality import is_flagged
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import speech
from support.engine import assert_timed_alike, cpu_engine
from support.song import config_thresholds

ZH = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "瞎眼今得看见"]


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> AlignmentEngine:
    torch.set_num_threads(2)
    return cpu_engine(tiny_model_dir, "float32")


def head_outputs(engine: AlignmentEngine) -> tuple[list[torch.Tensor], object]:
    """Every output of the timestamp head from now on (the slot logits), and the hook's handle."""
    outputs: list[torch.Tensor] = []
    handle = engine.aligner.model.thinker.lm_head.register_forward_hook(lambda _m, _a, out: outputs.append(out))
    return outputs, handle


def units(engine: AlignmentEngine, lines: list[str]) -> list[str]:
    return [unit for line in lines for unit in engine.units(line, "Chinese")]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_whole_clips_pass_is_the_thinkers_own_forward_pass(tiny_model_dir, dtype):
    """The song's encoding scattered into the prompt by the engine gives the very logits that the thinker's
    forward pass gives from the processor's inputs (what the engine ran before, and stock in substance)."""
    engine = cpu_engine(tiny_model_dir, dtype)
    clip = speech(20.0)  # three of the encoder's 8 s windows
    logits, handle = head_outputs(engine)
    engine.align(clip, ZH, "Chinese")
    handle.remove()
    thinker = engine.aligner.model.thinker
    prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(units(engine, ZH)) + TIMESTAMP_PAIR
    inputs = engine.aligner.processor(text=[prompt], audio=[clip], return_tensors="pt", padding=True)
    inputs = inputs.to(engine.device).to(engine.dtype)
    with torch.inference_mode(), thinker.lm_head.at(inputs["input_ids"][0] == engine.aligner.timestamp_token_id):
        reference = thinker(**inputs, use_cache=False).logits
    assert len(logits) == 1 and torch.equal(logits[0], reference)


def test_a_part_on_the_encoders_8s_grid_gets_what_it_gets_as_a_song_of_its_own(engine):
    """8 s of silence, then a clip that starts silent: the part from 8 s has the clip's mel frames (the same
    loudest bin, silence on both sides of the seam), its chunks and its encoder windows, so it is timed as
    the clip alone, 8 s later. Off by one chunk of embeddings, or counted from the song's start, it is not."""
    clip = np.concatenate([np.zeros(SAMPLE_RATE // 10, np.float32), speech(12.0)])
    song = np.concatenate([np.zeros(8 * SAMPLE_RATE, np.float32), clip])
    alone = engine.align(clip, ZH, "Chinese")
    part = engine.song(song).align(8 * SAMPLE_RATE, len(song), ZH, "Chinese")
    assert_timed_alike(part, alone)
    assert part.duration == alone.duration


def test_a_part_off_the_grid_is_refused(engine):
    song = engine.song(speech(12.0))
    with pytest.raises(ValueError, match="grid"):
        song.align(SAMPLE_RATE // 2, 4 * SAMPLE_RATE, ZH[:1], "Chinese")
    with pytest.raises(ValueError, match="grid"):
        song.align(0, 4 * SAMPLE_RATE + 1, ZH[:1], "Chinese")


def test_a_long_song_is_encoded_once_and_keeps_the_pipelines_guarantees(engine):
    """40 s in windows of 12 s, then two passes of anchored re-alignment: many forward passes, one run of the
    audio encoder. Against pass 1 alone (realign_passes 0): the anchors never move, starts never decrease,
    and the song never ends with more flagged lines."""
    audio = speech(40.0)
    lyrics = "\n".join(ZH * 3)
    settings = replace(engine.settings, window_seconds=12.0)
    segments = [(0.5, 11.0), (12.0, 23.5), (24.0, 39.0)]
    encoder_runs: list[int] = []
    hook = engine.aligner.model.thinker.audio_tower.register_forward_hook(lambda *_: encoder_runs.append(1))
    answers = {}
    try:
        for passes in (0, 2):
            encoder_runs.clear()
            answers[passes] = align_request(
                audio.reshape(1, -1), lyrics, "zh", song_audio=engine.song, voice_activity=lambda _clip: segments,
                settings=replace(settings, realign_passes=passes), thresholds=config_thresholds(),
                judge=partial(judge, thresholds=config_thresholds()))
            passes_run = int(answers[passes].description.split(" model passes")[0])
            assert passes_run >= 3 and encoder_runs == [1], (passes, answers[passes].description)
    finally:
        hook.remove()
    single, repaired = answers[0].outputs, answers[2].outputs
    starts = repaired["LINE_START"]
    assert starts == sorted(starts)
    for index, flags in enumerate(single["LINE_FLAGS"]):
        if not is_flagged(tuple(code for code in flags.split(",") if code)):
            assert repaired["LINE_PASS"][index] == 1
            assert (repaired["LINE_START"][index], repaired["LINE_END"][index]) == \
                (single["LINE_START"][index], single["LINE_END"][index]), f"anchor {index} moved"

    def flagged(outputs) -> int:
        return sum(1 for flags in outputs["LINE_FLAGS"] if is_flagged(tuple(code for code in flags.split(",") if code)))

    assert flagged(repaired) <= flagged(single)
