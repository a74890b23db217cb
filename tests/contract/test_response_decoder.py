"""sow_qwen3_contract.response.decode_alignment on columns built by hand: the one decoder of a qwen3_aligner answer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sow_qwen3_contract.response import AlignmentResponse, Line, Skipped, SongQuality, Unit, decode_alignment
from sow_qwen3_contract.tensors import END_REPAIRED, LINE_OUTPUTS, START_REPAIRED, UNIT_OUTPUTS, VOICED_OUTPUTS

NAN = math.nan


def line_columns(strings: type = bytes) -> dict[str, list]:
    """Two timed lines and one skipped line; text as ``strings`` (bytes, as tritonclient gives them, or str)."""

    def text(value: str):
        return value.encode("utf-8") if strings is bytes else value

    return {
        "LINE_TEXT": [text("奇异恩典"), text("Amazing grace")],
        "LINE_START": [0.5, 2.25],
        "LINE_END": [2.0, 4.0],
        "LANGUAGE_NAME": [text("Chinese")],
        "SKIPPED_TEXT": [text("[Chorus]")],
        "SKIPPED_LINE": [1],
        "LINE_CONFIDENCE": [0.75, NAN],
        "LINE_VOICED": [NAN, 0.5],
        "LINE_FLAGS": [text(""), text("unvoiced,low_confidence")],
        "SONG_VERDICT": [text("review")],
        "SONG_VOICED": [NAN],
        "LINE_PASS": [1, 2],
    }


def unit_columns() -> dict[str, list]:
    return {
        "UNIT_TEXT": [b"\xe5\xa5\x87", b"grace"],
        "UNIT_START": [0.5, 3.0],
        "UNIT_END": [1.0, 4.0],
        "UNIT_LINE": [0, 1],
        "UNIT_CONFIDENCE": [0.5, NAN],
        "UNIT_REPAIRED": [0, START_REPAIRED | END_REPAIRED],
    }


EXPECTED_LINES = (
    Line("奇异恩典", 0.5, 2.0, confidence=0.75, voiced_fraction=None, flags=(), line_pass=1),
    Line("Amazing grace", 2.25, 4.0, confidence=None, voiced_fraction=0.5, flags=("unvoiced", "low_confidence"),
         line_pass=2),
)


@pytest.mark.parametrize("strings", [bytes, str])
def test_lines_skipped_and_quality_from_bytes_or_str(strings):
    answer = decode_alignment(line_columns(strings))
    assert answer == AlignmentResponse(EXPECTED_LINES, "Chinese", (Skipped(1, "[Chorus]"),),
                                       SongQuality("review", None, 1), units=None, voiced=None)


def test_numpy_columns_as_response_columns_gives_them():
    """tritonclient's flattened arrays: object arrays of bytes, float32 with NaN, int32."""
    columns = {name: np.array(values, dtype=np.object_ if name in ("LINE_TEXT", "LANGUAGE_NAME", "SKIPPED_TEXT",
                                                                       "LINE_FLAGS", "SONG_VERDICT") else None)
               for name, values in line_columns().items()}
    for name in ("LINE_START", "LINE_END", "LINE_CONFIDENCE", "LINE_VOICED", "SONG_VOICED"):
        columns[name] = columns[name].astype(np.float32)
    answer = decode_alignment(columns)
    assert answer.lines == EXPECTED_LINES
    assert all(type(value) is float for line in answer.lines for value in (line.start, line.end))
    assert type(answer.lines[0].line_pass) is int and type(answer.skipped[0].index) is int


def test_nan_becomes_none_and_a_number_stays():
    columns = {**line_columns(), "SONG_VOICED": [0.625], "LINE_CONFIDENCE": [NAN, 0.0]}
    answer = decode_alignment(columns)
    assert answer.quality.mean_voiced_fraction == 0.625
    assert [line.confidence for line in answer.lines] == [None, 0.0]  # 0.0 is known, not "not known"
    assert [line.voiced_fraction for line in answer.lines] == [None, 0.5]


def test_flags_are_split_on_commas_and_counted_when_they_count():
    columns = {**line_columns(), "LINE_FLAGS": [b"vad_unavailable", b"collapsed,repaired"]}
    answer = decode_alignment(columns)
    assert [line.flags for line in answer.lines] == [("vad_unavailable",), ("collapsed", "repaired")]
    assert answer.quality.flagged_lines == 1  # vad_unavailable alone is informational


@pytest.mark.parametrize("name", LINE_OUTPUTS)
def test_a_missing_line_output_is_a_key_error_naming_it(name):
    columns = line_columns()
    del columns[name]
    with pytest.raises(KeyError, match=name):
        decode_alignment(columns)


def test_units_only_when_every_unit_output_is_there():
    answer = decode_alignment({**line_columns(), **unit_columns()})
    assert answer.units == (Unit("奇", 0.5, 1.0, 0, 0.5, 0), Unit("grace", 3.0, 4.0, 1, None, START_REPAIRED | END_REPAIRED))
    partial = {**line_columns(), **unit_columns()}
    del partial[UNIT_OUTPUTS[-1]]
    assert decode_alignment(partial).units is None
    assert decode_alignment(line_columns()).units is None


def test_voiced_segments_only_when_asked_for_and_empty_when_not_measured():
    assert decode_alignment(line_columns()).voiced is None
    measured = decode_alignment({**line_columns(), "VOICED_START": [0.25, 3.0], "VOICED_END": [1.5, 3.5]})
    assert measured.voiced == ((0.25, 1.5), (3.0, 3.5))
    assert decode_alignment({**line_columns(), **dict.fromkeys(VOICED_OUTPUTS, [])}).voiced == ()
    assert decode_alignment({**line_columns(), "VOICED_START": [1.0]}).voiced is None  # half of the pair: not there


@pytest.mark.parametrize("name, values", [
    ("LINE_START", [0.5]),
    ("LINE_PASS", [1, 2, 3]),
    ("SKIPPED_LINE", []),
])
def test_line_columns_of_different_lengths_are_refused(name, values):
    with pytest.raises(ValueError):
        decode_alignment({**line_columns(), name: values})


@pytest.mark.parametrize("name", ["UNIT_END", "VOICED_END"])
def test_unit_and_voiced_columns_of_different_lengths_are_refused(name):
    columns = {**line_columns(), **unit_columns(), "VOICED_START": [0.0], "VOICED_END": [1.0]}
    columns[name] = [*columns[name], 9.0]
    with pytest.raises(ValueError):
        decode_alignment(columns)


def test_an_empty_one_value_output_is_refused():
    with pytest.raises(ValueError, match="empty"):
        decode_alignment({**line_columns(), "SONG_VERDICT": []})
