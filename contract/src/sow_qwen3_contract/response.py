"""One decoder of a ``qwen3_aligner`` response into typed lines, for the client and the tests.

``decode_alignment(columns)`` takes the response's output tensors as flat
sequences, one per name (the batch dimension of 1 removed: with
tritonclient, ``result.as_numpy(name).reshape(-1)``; any sequence of
numbers and of ``bytes`` or ``str`` will do). It needs ``LINE_OUTPUTS``; the
units are decoded when ``UNIT_OUTPUTS`` are there and the voiced segments
when ``VOICED_OUTPUTS`` are. The server's NaN ("not known") becomes None.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sow_qwen3_contract.quality import is_flagged

from .tensors import LINE_OUTPUTS, UNIT_OUTPUTS, VOICED_OUTPUTS


@dataclass(frozen=True)
class Line:
    """One timed lyric line, in seconds, with the server's evidence for it (None / () when not known)."""

    text: str
    start: float
    end: float
    confidence: float | None = None
    voiced_fraction: float | None = None
    flags: tuple[str, ...] = ()
    line_pass: int | None = None  # the server's pass that produced the times (1 = first)


@dataclass(frozen=True)
class SongQuality:
    """The server's judgement of a whole song."""

    verdict: str  # pass, review or fail
    mean_voiced_fraction: float | None  # None when the VAD was not run
    flagged_lines: int


@dataclass(frozen=True)
class Skipped:
    """A lyric line the server did not time (a section marker or a repeat line) and its 0-based line number."""

    index: int
    text: str


@dataclass(frozen=True)
class Unit:
    """One aligned unit (a CJK character or a word) with its times, line and evidence."""

    text: str
    start: float
    end: float
    line: int  # index into the response's lines
    confidence: float | None
    repaired: int  # tensors.START_REPAIRED | tensors.END_REPAIRED bits


@dataclass(frozen=True)
class AlignmentResponse:
    """A decoded ``qwen3_aligner`` answer: its lines, the language they were aligned as, the lyric lines
    it did not time, the song's quality, and (when asked for) the units and the voiced segments."""

    lines: tuple[Line, ...]
    language: str
    skipped: tuple[Skipped, ...]
    quality: SongQuality
    units: tuple[Unit, ...] | None = None  # None: UNIT_OUTPUTS were not asked for
    voiced: tuple[tuple[float, float], ...] | None = None  # None: VOICED_OUTPUTS not asked for; () not measured


def decode_alignment(columns: Mapping[str, Sequence]) -> AlignmentResponse:
    """The typed answer in ``columns`` (output name -> flat values); KeyError names a missing LINE_OUTPUTS name."""
    missing = [name for name in LINE_OUTPUTS if name not in columns]
    if missing:
        raise KeyError(f"the response lacks the outputs {', '.join(missing)}")
    lines = tuple(
        Line(text_of(text), float(start), float(end), known(confidence), known(voiced), flag_codes(flags),
             int(line_pass))
        for text, start, end, confidence, voiced, flags, line_pass in zip(
            *(columns[name] for name in ("LINE_TEXT", "LINE_START", "LINE_END", "LINE_CONFIDENCE", "LINE_VOICED",
                                         "LINE_FLAGS", "LINE_PASS")), strict=True)
    )
    quality = SongQuality(text_of(first(columns["SONG_VERDICT"])), known(first(columns["SONG_VOICED"])),
                          sum(1 for line in lines if is_flagged(line.flags)))
    skipped = tuple(Skipped(int(index), text_of(text))
                    for index, text in zip(columns["SKIPPED_LINE"], columns["SKIPPED_TEXT"], strict=True))
    units = None
    if all(name in columns for name in UNIT_OUTPUTS):
        units = tuple(Unit(text_of(text), float(start), float(end), int(line), known(confidence), int(repaired))
                      for text, start, end, line, confidence, repaired in zip(
                          *(columns[name] for name in UNIT_OUTPUTS), strict=True))
    voiced = None
    if all(name in columns for name in VOICED_OUTPUTS):
        voiced = tuple((float(start), float(end))
                       for start, end in zip(*(columns[name] for name in VOICED_OUTPUTS), strict=True))
    return AlignmentResponse(lines, text_of(first(columns["LANGUAGE_NAME"])), skipped, quality, units, voiced)


def flag_codes(value: object) -> tuple[str, ...]:
    """The reason codes of one LINE_FLAGS entry (comma-separated, empty for none)."""
    return tuple(code for code in text_of(value).split(",") if code)


def known(value: object) -> float | None:
    """A float from the server, None for its NaN ("not known")."""
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


def text_of(value: object) -> str:
    """A string output's entry: UTF-8 bytes on the wire, or already text."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def first(values: Iterable) -> object:
    """The one entry of a [1]-shaped output."""
    for value in values:
        return value
    raise ValueError("an output that carries one value is empty")
