"""LRC and JSON renderings against hand-written golden files, and rounding properties."""
from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sow_qwen3.formats import Line, Skipped, SongQuality, centiseconds, to_json, to_json_data, to_lrc

GOLDEN = Path(__file__).parent / "golden"

# Starts chosen to sit on rounding edges: 3.455 rounds up (its binary value is above
# the half), 62.004 down; 62.0049 after 62.005 would round below its predecessor.
SONG = [
    Line("奇异恩典 何等甘甜", 0.0, 3.456, 0.91234, 0.8765, (), 1),
    Line("我罪已得赦免", 3.455, 7.0, 0.5, 1.0, (), 1),
    Line("前我失丧 今被寻回", 62.004, 65.5, 0.1, 0.25, ("unvoiced", "low_confidence"), 2),
    Line("Amazing grace, how sweet the sound", 62.005, 66.25, 0.3, 0.9, ("collapsed",), 3),
    Line("瞎眼今得看见", 62.0049, 70.125, 0.2999, 0.6, ("collapsed", "repaired"), 2),
    Line("阿们", 299.99, 299.999, 0.7, 0.0, ("unvoiced", "clamped"), 1),
    Line("!", 299.999, 299.999, float("nan"), 0.0, ("unvoiced", "zero_length", "collapsed"), 1),
]
DURATION = 299.999
QUALITY = SongQuality("fail", 0.61807, 5)


def test_lrc_matches_golden():
    assert to_lrc(SONG, DURATION) == (GOLDEN / "song.lrc").read_text(encoding="utf-8")


def test_json_matches_golden():
    assert to_json(to_json_data(SONG, DURATION, "Chinese", QUALITY)) == (GOLDEN / "song.json").read_text(encoding="utf-8")


def test_no_lines_gives_only_the_length_tag():
    assert to_lrc([], 61.4) == "[length: 01:01]\n"
    assert to_json_data([], 61.4, "English") == {"version": 2, "language": "English", "duration_seconds": 61.4,
                                                  "line_count": 0, "quality": None, "lines": [], "skipped": []}


def test_json_lists_the_skipped_lyric_lines_after_the_lines():
    data = to_json_data(SONG[:1], DURATION, "Chinese", QUALITY, [Skipped(0, "[Verse 1]"), Skipped(3, "(x2)")])
    assert list(data) == ["version", "language", "duration_seconds", "line_count", "quality", "lines", "skipped"]
    assert data["skipped"] == [{"index": 0, "text": "[Verse 1]"}, {"index": 3, "text": "(x2)"}]
    assert data["line_count"] == 1


def test_unknown_evidence_is_null():
    data = to_json_data([Line("x", 1.0, 2.0, float("nan"), None)], 3.0, "English", SongQuality("review", None, 0))
    assert data["quality"] == {"verdict": "review", "mean_voiced_fraction": None, "flagged_lines": 0}
    assert data["lines"][0] == {"index": 0, "text": "x", "start": 1.0, "end": 2.0, "confidence": None,
                                "voiced_fraction": None, "flags": [], "pass": None}


STAMP = re.compile(r"^\[(\d\d):(\d\d)\.(\d\d)\](.*)$")
seconds = st.floats(min_value=0, max_value=300, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@given(st.lists(st.tuples(seconds, st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1)),
                max_size=30))
def test_lrc_keeps_order_and_text_and_rounds_to_the_centisecond(items):
    lines = [Line(text, start, start) for start, text in items]
    rendered = to_lrc(lines, 300.0).splitlines()
    assert rendered[0] == "[length: 05:00]"
    stamps = [STAMP.match(row) for row in rendered[1:]]
    assert [match.group(4) for match in stamps] == [line.text for line in lines]
    centis = [int(m.group(1)) * 6000 + int(m.group(2)) * 100 + int(m.group(3)) for m in stamps]
    assert centis == sorted(centis)  # never reordered
    running = 0
    for line, value in zip(lines, centis):
        running = max(running, round(float(f"{line.start:.2f}") * 100))
        assert value == running


@given(st.lists(seconds, max_size=30).map(sorted))
def test_sorted_starts_are_stamped_exactly_as_formatted(starts):
    rendered = to_lrc([Line("x", start, start) for start in starts], 300.0).splitlines()[1:]
    for start, row in zip(starts, rendered):
        minutes, rest = divmod(float(f"{start:.2f}"), 60)
        assert row == f"[{int(minutes):02d}:{rest:05.2f}]x"


@given(seconds)
def test_centiseconds_agree_with_string_formatting(value):
    assert centiseconds(value) == int(f"{value:.2f}".replace(".", ""))


def test_json_is_valid_utf8_json_with_documented_keys():
    data = json.loads(to_json(to_json_data(SONG, DURATION, "Chinese", QUALITY)))
    assert list(data) == ["version", "language", "duration_seconds", "line_count", "quality", "lines", "skipped"]
    assert [list(line) for line in data["lines"]] == [
        ["index", "text", "start", "end", "confidence", "voiced_fraction", "flags", "pass"]] * len(SONG)
    assert data["line_count"] == len(data["lines"]) == len(SONG)
