"""LRC and JSON renderings of an alignment.

LRC: a ``[length: mm:ss]`` tag, then one ``[mm:ss.xx]text`` line per timed
lyric line, in order. Times are rounded to the centisecond the way
``f"{seconds:.2f}"`` rounds, then never allowed to fall below the previous
line's, so rounding cannot reorder lines.

JSON (``JSON_VERSION`` 1), keys in this order::

    {"version": 1, "language": "Chinese", "duration_seconds": 212.48, "line_count": 2,
     "lines": [{"index": 0, "text": "...", "start": 12.34, "end": 15.6}, ...],
     "skipped": [{"index": 0, "text": "[Verse 1]"}, ...]}

``start`` and ``end`` are seconds rounded to the millisecond; ``index`` counts
the timed lines from 0 (each sung occurrence of a repeated line is one).
``skipped`` lists the lyric lines that are not sung (section markers, repeat
lines), each with its 0-based line number in the lyrics as sent.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

JSON_VERSION = 1


@dataclass(frozen=True)
class Line:
    """One timed lyric line, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Skipped:
    """A lyric line the server did not time (a section marker or a repeat line) and its 0-based line number."""

    index: int
    text: str


def centiseconds(seconds: float) -> int:
    """``seconds`` rounded to whole centiseconds, exactly as ``f"{seconds:.2f}"`` rounds."""
    return int(Decimal(seconds).quantize(Decimal("0.01")) * 100)


def lrc_stamp(centis: int) -> str:
    minutes, rest = divmod(centis, 6000)
    return f"[{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}]"


def to_lrc(lines: Sequence[Line], duration_seconds: float) -> str:
    """The LRC text: the length tag, then the lines in order, each stamped with its start."""
    total = int(Decimal(duration_seconds).quantize(Decimal("1")))
    out = [f"[length: {total // 60:02d}:{total % 60:02d}]"]
    previous = 0
    for line in lines:
        previous = max(previous, centiseconds(line.start))
        out.append(f"{lrc_stamp(previous)}{line.text}")
    return "\n".join(out) + "\n"


def to_json_data(lines: Sequence[Line], duration_seconds: float, language: str,
                 skipped: Sequence[Skipped] = ()) -> dict:
    """The JSON document as a dict (see the module docstring for its shape)."""
    return {
        "version": JSON_VERSION,
        "language": language,
        "duration_seconds": round(duration_seconds, 3),
        "line_count": len(lines),
        "lines": [{"index": index, "text": line.text, "start": round(line.start, 3), "end": round(line.end, 3)}
                  for index, line in enumerate(lines)],
        "skipped": [{"index": item.index, "text": item.text} for item in skipped],
    }


def to_json(data: dict) -> str:
    """``data`` as UTF-8-friendly, indented JSON text ending with a newline."""
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
