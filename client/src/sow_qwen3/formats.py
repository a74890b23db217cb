"""LRC and JSON renderings of an alignment.

LRC: a ``[length: mm:ss]`` tag, then one ``[mm:ss.xx]text`` line per timed
lyric line, in order. Times are rounded to the centisecond the way
``f"{seconds:.2f}"`` rounds, then never allowed to fall below the previous
line's, so rounding cannot reorder lines.

JSON (``JSON_VERSION`` 2), keys in this order::

    {"version": 2, "language": "Chinese", "duration_seconds": 212.48, "line_count": 2,
     "quality": {"verdict": "review", "mean_voiced_fraction": 0.812, "flagged_lines": 1},
     "lines": [{"index": 0, "text": "...", "start": 12.34, "end": 15.6,
                "confidence": 0.91, "voiced_fraction": 0.87, "flags": [], "pass": 1}, ...],
     "skipped": [{"index": 0, "text": "[Verse 1]"}, ...]}

``start`` and ``end`` are seconds rounded to the millisecond; ``index`` counts
the timed lines from 0 (each sung occurrence of a repeated line is one).
``confidence`` (the model's mean probability for the line's timestamps),
``voiced_fraction`` (the share of the line the server's voice-activity
detector heard as voiced) and ``mean_voiced_fraction`` are rounded to 3
decimals, and null when not known (a line without alignable units has no
confidence; without the VAD there is no voiced fraction). ``flags`` are the
server's reason codes (see ``sow_qwen3_contract.quality``); ``flagged_lines`` counts the
lines with a flag that counts against the song. ``pass`` is the server's
alignment pass that produced the line's times: 1 for the first pass, 2 or more
for a doubtful line that anchored re-alignment repaired (null when not known). ``skipped`` lists the lyric
lines that are not sung (section markers, repeat lines), each with its 0-based
line number in the lyrics as sent. Version 1 had neither ``quality`` nor the
line keys after ``end``; ``pass`` was added to version 2 later (readers that
ignore unknown keys are unaffected).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from decimal import Decimal

from sow_qwen3_contract.response import Line, Skipped, SongQuality

JSON_VERSION = 2


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
                 quality: SongQuality | None = None, skipped: Sequence[Skipped] = ()) -> dict:
    """The JSON document as a dict (see the module docstring for its shape; ``quality`` None gives null)."""
    return {
        "version": JSON_VERSION,
        "language": language,
        "duration_seconds": round(duration_seconds, 3),
        "line_count": len(lines),
        "quality": None if quality is None else quality_data(quality),
        "lines": [line_data(index, line) for index, line in enumerate(lines)],
        "skipped": [{"index": item.index, "text": item.text} for item in skipped],
    }


def quality_data(quality: SongQuality) -> dict:
    """The JSON document's ``quality``."""
    return {"verdict": quality.verdict, "mean_voiced_fraction": known(quality.mean_voiced_fraction),
            "flagged_lines": quality.flagged_lines}


def line_data(index: int, line: Line) -> dict:
    """One entry of the JSON document's ``lines``."""
    return {"index": index, "text": line.text, "start": round(line.start, 3), "end": round(line.end, 3),
            "confidence": known(line.confidence), "voiced_fraction": known(line.voiced_fraction),
            "flags": list(line.flags), "pass": line.line_pass}


def known(value: float | None) -> float | None:
    """``value`` rounded to 3 decimals, or None when it is None or NaN (JSON has no NaN)."""
    return None if value is None or math.isnan(value) else round(value, 3)


def to_json(data: dict) -> str:
    """``data`` as UTF-8-friendly, indented JSON text ending with a newline."""
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
