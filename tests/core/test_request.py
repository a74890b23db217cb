"""align_request: one request's raw inputs to every output's values, driven with a fake model and a fake VAD."""
from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from sow_aligner import settings as sow_settings
from sow_aligner.errors import InvalidRequest
from sow_aligner.evidence import judge
from sow_aligner.request import align_request
from sow_aligner.song_alignment import align_song
from sow_qwen3_contract.quality import VAD_UNAVAILABLE
from sow_qwen3_contract.tensors import ALIGNER_OUTPUTS, SAMPLE_RATE
from sow_qwen3_server import launcher
from support.fake_align import RecordingAlign, even_timing, position_clip
from support.song import REPO, config_thresholds

CONFIG = REPO / "model_repository" / "qwen3_aligner" / "config.pbtxt"
LYRICS = "[Verse]\nAmazing grace how sweet\nthe sound that saved\n(x2)\na wretch like me"
SEGMENTS = [(0.5, 4.0), (4.5, 9.5)]


class CountingVad:
    """A VAD that answers ``segments`` and records the clips it was asked about."""

    def __init__(self, segments: list[tuple[float, float]] | None) -> None:
        self.segments = segments
        self.clips: list[np.ndarray] = []

    def __call__(self, clip: np.ndarray) -> list[tuple[float, float]] | None:
        self.clips.append(clip)
        return self.segments


def service_settings(**changes) -> sow_settings.Settings:
    """config.pbtxt's settings, with ``changes``."""
    return replace(sow_settings.resolve(launcher.config_parameters(REPO / "model_repository"), {}), **changes)


def request(samples: np.ndarray, lyrics: str | None = LYRICS, language: str | None = "en", *,
            vad: CountingVad | None = None, align: RecordingAlign | None = None, **settings):
    return align_request(samples, lyrics, language, song_audio=(align or RecordingAlign(even_timing(0.9))).song,
                         voice_activity=vad or CountingVad(SEGMENTS), settings=service_settings(**settings),
                         thresholds=config_thresholds())


def audio(seconds: float) -> np.ndarray:
    """The AUDIO tensor as received: [1, samples] float32 (sample k holds k, so the fake knows where it is)."""
    return position_clip(seconds).astype(np.float32)[None, :]


def test_every_output_of_config_pbtxt_gets_its_values():
    values = request(audio(10.0))
    declared = re.findall(r'name:\s*"([A-Z_]+)"', CONFIG.read_text().split("\noutput [", 1)[1].split("\n]\n", 1)[0])
    assert set(values.outputs) == set(declared) == set(ALIGNER_OUTPUTS)
    assert values.outputs["LINE_TEXT"] == ["Amazing grace how sweet", "the sound that saved"] * 2 + ["a wretch like me"]
    assert values.outputs["SKIPPED_TEXT"] == ["[Verse]", "(x2)"] and values.outputs["SKIPPED_LINE"] == [0, 3]
    assert values.outputs["LANGUAGE_NAME"] == ["English"]
    assert values.lines == 5 and values.audio_seconds == 10.0


def test_the_values_are_the_song_pipelines_with_the_segments_it_was_judged_against():
    clip = audio(10.0)
    values = request(clip)
    song = align_song(RecordingAlign(even_timing(0.9)).song(clip[0]), values.outputs["LINE_TEXT"], "English",
                      segments=SEGMENTS, judge=partial(judge, thresholds=config_thresholds()),
                      realign_passes=service_settings().realign_passes, window_seconds=service_settings().window_seconds)
    assert values.outputs["LINE_START"] == song.alignment.lines.starts
    assert values.outputs["UNIT_TEXT"] == song.alignment.unit_text
    assert values.outputs["LINE_FLAGS"] == [",".join(codes) for codes in song.judgement.line_flags]
    assert values.outputs["SONG_VERDICT"] == [song.judgement.verdict]
    assert values.description == song.describe()
    assert values.outputs["VOICED_START"] == [0.5, 4.5] and values.outputs["VOICED_END"] == [4.0, 9.5]


def test_the_vad_is_asked_once_for_the_whole_clip():
    vad = CountingVad(SEGMENTS)
    request(audio(10.0), vad=vad)
    assert len(vad.clips) == 1 and vad.clips[0].shape == (10 * SAMPLE_RATE,) and vad.clips[0].dtype == np.float32


def test_without_voice_activity_the_voiced_outputs_are_empty_and_the_lines_say_so():
    values = request(audio(10.0), vad=CountingVad(None))
    assert values.outputs["VOICED_START"] == [] and values.outputs["VOICED_END"] == []
    assert all(math.isnan(v) for v in values.outputs["LINE_VOICED"]) and math.isnan(values.outputs["SONG_VOICED"][0])
    assert all(VAD_UNAVAILABLE in flags.split(",") for flags in values.outputs["LINE_FLAGS"])


@pytest.mark.parametrize("samples, lyrics, language, message", [
    (np.zeros((2, SAMPLE_RATE), np.float32), LYRICS, None, "AUDIO must have shape"),
    (np.full((1, SAMPLE_RATE), np.nan, np.float32), LYRICS, None, "non-finite"),
    (np.zeros((1, 5 * SAMPLE_RATE), np.float32), LYRICS, None, "the limit is 4 s"),
    (np.zeros((1, SAMPLE_RATE), np.float32), None, None, "LYRICS"),
    (np.zeros((1, SAMPLE_RATE), np.float32), "[Chorus]\n(x2)", None, "no line to sing"),
    (np.zeros((1, SAMPLE_RATE), np.float32), LYRICS, "Klingon", "Klingon"),
])
def test_a_bad_request_is_refused_before_the_vad_or_the_model_runs(samples, lyrics, language, message):
    vad, align = CountingVad(SEGMENTS), RecordingAlign(even_timing(0.9))
    with pytest.raises(InvalidRequest, match=message):
        request(samples, lyrics, language, vad=vad, align=align, max_audio_seconds=4.0)
    assert vad.clips == [] and align.calls == []


def test_nothing_alignable_is_the_models_refusal_after_the_vad():
    vad = CountingVad(SEGMENTS)
    with pytest.raises(InvalidRequest, match="nothing alignable"):
        request(audio(2.0), "- -", vad=vad)
    assert len(vad.clips) == 1


def test_a_long_song_is_cut_into_windows_by_the_settings():
    align = RecordingAlign(even_timing(0.9))
    lyrics = "\n".join(f"line {index} words here" for index in range(40))
    values = request(audio(30.0), lyrics, None, align=align, window_seconds=12.0, realign_passes=0)
    assert len(align.calls) >= 3 and max(seconds for _, seconds, _ in align.calls) <= 12.0
    assert values.outputs["LINE_PASS"] == [1] * 40 and values.lines == 40

