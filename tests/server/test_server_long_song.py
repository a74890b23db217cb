"""The 7-minute synthetic song with its lyrics as written, through the real tritonserver on the tiny checkpoint.

The song (tests/data/synthetic_song_7min.*) is past the default 300 s limit
and the 180 s single-pass window; its lyrics carry section markers and repeat
notation. The tiny model's times are arbitrary, so what is checked is the
mechanics: every sung line is timed once, in order, markers are skipped, and
LINE_PASS says which pass timed each line (all 1 with re-alignment off).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
import tritonclient.http as httpclient

from sow_aligner.lyrics import sung_lines
from sow_qwen3_server.launcher import config_parameter
from support.infer import MODEL, answer_of, build_inputs, http_client
from support.song import DATA, LONG_SONG, REPO, song_audio, truth
from support.stopping import serving

pytestmark = pytest.mark.server

LONG_SONG_LIMIT = {"SOW_QWEN3_MAX_AUDIO_SECONDS": "900"}


@dataclass(frozen=True)
class LongSongAnswer:
    text: list[str]
    start: list[float]
    end: list[float]
    line_pass: list[int]
    skipped: list[tuple[int, str]]


def align(url: str) -> LongSongAnswer:
    lyrics = (DATA / f"{LONG_SONG}.txt").read_text(encoding="utf-8")
    client = http_client(url)
    try:
        result = client.infer(MODEL, build_inputs(httpclient, song_audio(LONG_SONG), lyrics, "Chinese"))
    finally:
        client.close()
    answer = answer_of(result)
    return LongSongAnswer([line.text for line in answer.lines], [line.start for line in answer.lines],
                          [line.end for line in answer.lines], [line.line_pass for line in answer.lines],
                          [(item.index, item.text) for item in answer.skipped])


@pytest.fixture(scope="module")
def long_song_server(tiny_model_dir, server_logs):
    """The real server allowing 15-minute songs, re-alignment as configured (config.pbtxt)."""
    yield from serving(tiny_model_dir, server_logs, LONG_SONG_LIMIT)


@pytest.fixture(scope="module")
def long_song_single_pass_server(tiny_model_dir, server_logs):
    yield from serving(tiny_model_dir, server_logs, {**LONG_SONG_LIMIT, "SOW_QWEN3_REALIGN_PASSES": "0"})


@pytest.fixture(scope="module")
def expected():
    written = (DATA / f"{LONG_SONG}.txt").read_text(encoding="utf-8")
    sung = sung_lines(written)
    assert sung.lines == [line.text for line in truth(LONG_SONG).lines]
    return sung


def check_the_mechanics(answer: LongSongAnswer, expected, duration: float, server_log: str) -> None:
    assert answer.text == expected.lines
    assert answer.skipped == [(item.index, item.text) for item in expected.skipped]
    assert len(answer.start) == len(answer.end) == len(answer.line_pass) == len(expected.lines)
    assert answer.start == sorted(answer.start), "starts never decrease"
    assert all(0.0 <= start <= end <= duration for start, end in zip(answer.start, answer.end))
    window = float(config_parameter(REPO / "model_repository", "window_seconds"))
    passes = re.search(r"(\d+) model passes over ([\d.]+) s of audio \(longest ([\d.]+) s\)", server_log)
    assert passes, server_log[-3000:]
    assert int(passes[1]) >= math.ceil(duration / window) and float(passes[3]) <= window, "aligned in windows"


def test_the_7_minute_song_with_notated_lyrics_is_timed_line_by_line(long_song_server, expected):
    answer = align(long_song_server.http_url)
    check_the_mechanics(answer, expected, truth(LONG_SONG).duration, long_song_server.log())
    passes = int(config_parameter(REPO / "model_repository", "realign_passes"))
    assert passes >= 1, "config.pbtxt turns re-alignment on by default"
    assert set(answer.line_pass) <= set(range(1, passes + 2))


def test_with_realignment_off_every_line_is_from_the_first_pass(long_song_single_pass_server, expected):
    answer = align(long_song_single_pass_server.http_url)
    check_the_mechanics(answer, expected, truth(LONG_SONG).duration, long_song_single_pass_server.log())
    assert answer.line_pass == [1] * len(expected.lines)
