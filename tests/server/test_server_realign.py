"""Anchored re-alignment and long songs in windows, through the real tritonserver on the tiny checkpoint.

The tiny model's timings are arbitrary, so the synthetic song gets doubtful
lines (flags) and anchors; what these tests check is the pipeline's rules,
seen from outside: anchors never move, LINE_PASS says which lines were
re-aligned, starts never decrease, no more flagged lines than the single pass,
and a song past the single-pass limit is aligned in windows, line for line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.http as httpclient

from sow_qwen3_contract.quality import is_flagged
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import speech
from support.infer import MODEL, answer_of, build_inputs, http_client
from support.song import SONG_LYRICS, song_audio
from support.stopping import serving

pytestmark = pytest.mark.server
ZH = "奇异恩典 何等甘甜\n我罪已得赦免\n前我失丧 今被寻回\n瞎眼今得看见"


@dataclass(frozen=True)
class Answer:
    """The per-line and per-unit outputs of one response, as plain lists."""

    text: list[str]
    start: list[float]
    end: list[float]
    flags: list[tuple[str, ...]]
    line_pass: list[int]
    units: list[tuple]  # per unit: (line, text, start, end, confidence, repaired)

    def flagged(self) -> int:
        return sum(1 for codes in self.flags if is_flagged(codes))

    def units_of(self, line: int) -> list[tuple]:
        return [unit[1:] for unit in self.units if unit[0] == line]


def answer(url: str, audio: np.ndarray, lyrics: str, language: str = "English") -> Answer:
    client = http_client(url)
    try:
        result = client.infer(MODEL, build_inputs(httpclient, audio, lyrics, language))
    finally:
        client.close()

    decoded = answer_of(result)
    return Answer(
        text=[line.text for line in decoded.lines],
        start=[line.start for line in decoded.lines],
        end=[line.end for line in decoded.lines],
        flags=[line.flags for line in decoded.lines],
        line_pass=[line.line_pass for line in decoded.lines],
        units=[(unit.line, unit.text, unit.start, unit.end, unit.confidence, unit.repaired) for unit in decoded.units],
    )


@pytest.fixture(scope="module", params=["silero_vad", "none"])
def long_song_server(request, tiny_model_dir, server_logs):
    """The real server allowing 15-minute songs, in windows of 20 s (small, so the tiny model is quick),
    with the VAD and without it."""
    yield from serving(tiny_model_dir, server_logs, {"SOW_QWEN3_MAX_AUDIO_SECONDS": "900",
                                                     "SOW_QWEN3_WINDOW_SECONDS": "20",
                                                     "SOW_QWEN3_VAD_MODEL": request.param})


@pytest.fixture(scope="module")
def song():
    return song_audio(), SONG_LYRICS.read_text(encoding="utf-8")


def test_doubtful_lines_are_realigned_and_anchors_never_move(triton_server, single_pass_server):
    # The tiny model puts every time within 3.2 s of the audio it is given: on this short clip its
    # single pass has anchors and doubtful lines, and re-alignment repairs some of these.
    audio, lyrics = speech(6.0), ZH
    single = answer(single_pass_server.http_url, audio, lyrics, "Chinese")
    repaired = answer(triton_server.http_url, audio, lyrics, "Chinese")
    anchors = [index for index, codes in enumerate(single.flags) if not is_flagged(codes)]
    assert single.line_pass == [1] * len(single.text)
    assert 0 < len(anchors) < len(single.text), "the song must have both anchors and doubtful lines"
    assert repaired.text == single.text
    for index in anchors:
        assert repaired.line_pass[index] == 1
        assert (repaired.start[index], repaired.end[index]) == (single.start[index], single.end[index])
        assert repaired.units_of(index) == single.units_of(index), f"anchor {index} moved"
    moved = [index for index, number in enumerate(repaired.line_pass) if number > 1]
    assert moved, "with the tiny model some doubtful run is re-aligned for the better on this song"
    assert set(repaired.line_pass) <= {1, 2, 3} and not set(moved) & set(anchors)
    for index in moved:
        assert repaired.units_of(index) != single.units_of(index), "a re-aligned line has the new pass's units"
    assert repaired.start == sorted(repaired.start)
    assert repaired.flagged() <= single.flagged()


def test_nothing_moves_when_realignment_is_off(single_pass_server, song):
    """LINE_PASS is all 1s and a second request answers the same: the single pass is deterministic."""
    audio, lyrics = song
    first, again = (answer(single_pass_server.http_url, audio, lyrics) for _ in range(2))
    assert first == again and first.line_pass == [1] * len(first.text)
    assert any(is_flagged(codes) for codes in first.flags), "doubtful lines stay as they are"


def test_a_song_past_the_single_pass_limit_is_aligned_in_windows(long_song_server, song):
    audio, lyrics = song
    repeats = 6  # 6 x 56 s = 336 s: past the default 300 s limit and 17 windows of 20 s
    long_audio, long_lyrics = np.tile(audio, repeats), "\n".join([lyrics.strip()] * repeats)
    result = answer(long_song_server.http_url, long_audio, long_lyrics)
    lines = lyrics.strip().splitlines() * repeats
    assert result.text == lines
    assert len(result.start) == len(result.end) == len(result.line_pass) == len(lines)
    assert result.start == sorted(result.start)
    assert 0.0 <= result.start[0] and result.end[-1] <= long_audio.size / SAMPLE_RATE
    assert set(result.line_pass) <= {1, 2, 3}
    assert [unit[0] for unit in result.units] == sorted(unit[0] for unit in result.units)
    passes = re.search(r"(\d+) model passes over ([\d.]+) s of audio \(longest ([\d.]+) s\)", long_song_server.log())
    assert passes, long_song_server.log()[-3000:]
    assert int(passes[1]) >= 2 and float(passes[3]) <= 20.0, "windows of at most 20 s, never the song in one pass"
    without_vad = f"voice activity not measured: {long_audio.size / SAMPLE_RATE:.1f} s of audio cut into windows every 20 s"
    assert (without_vad in long_song_server.log()) == (result.flags[0][-1:] == ("vad_unavailable",))
