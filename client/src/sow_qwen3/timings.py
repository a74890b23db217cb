"""Reading existing timings: an LRC file (starts only) or our JSON (starts and ends).

LRC: every ``[mm:ss.xx]`` stamp at the start of a line times that line's text;
tags such as ``[ar:...]`` or ``[length: ...]``, lines without a stamp and
stamps with no text are skipped. ``read_timing`` keeps the file's order of
lines (so that ``eval`` pairs a repeated chorus line with its own occurrence
even when a line starts before the one above it); a line with several stamps
(``[00:10.00][01:10.00]text``, sung several times) becomes one line per stamp
at its place in the file, these in the time order of its stamps. ``parse_lrc``
and ``TimingFile.in_time_order`` give time order (stable for equal times), the
order a player shows them in.

JSON: the ``lines`` of ``sow-qwen3 align --format json`` (version 1 or 2).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError

STAMP = re.compile(r"\[(\d+):(\d{1,2}(?:[.:]\d{1,3})?)\]")


@dataclass(frozen=True)
class StampedLine:
    text: str
    start: float
    end: float | None  # None for LRC, which gives starts only


@dataclass(frozen=True)
class TimingFile:
    """The timed lines of one file and its kind: "lrc" or "json"."""

    lines: tuple[StampedLine, ...]  # in the file's order (see the module docstring)
    kind: str
    name: str

    def in_time_order(self) -> TimingFile:
        """The same timing, its lines sorted by start (stable for equal starts)."""
        return TimingFile(tuple(sorted(self.lines, key=lambda line: line.start)), self.kind, self.name)


def parse_lrc(text: str) -> list[StampedLine]:
    """The timed lines of LRC ``text``, in time order (stable for equal times)."""
    return sorted(lrc_in_file_order(text), key=lambda line: line.start)


def lrc_in_file_order(text: str) -> list[StampedLine]:
    """The timed lines of LRC ``text`` in the file's order; a line's several stamps in time order at its place."""
    lines = []
    for row in text.splitlines():
        stamps = []
        rest = row.strip()
        while match := STAMP.match(rest):
            minutes, seconds = match.groups()
            stamps.append(int(minutes) * 60 + float(seconds.replace(":", ".")))
            rest = rest[match.end():]
        rest = rest.strip()
        if rest:
            lines.extend(StampedLine(rest, stamp, None) for stamp in sorted(stamps))
    return lines


def parse_json(text: str) -> list[StampedLine]:
    """The lines of our JSON document; ValueError when it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("lines"), list):
        raise ValueError("no \"lines\" list: not a sow-qwen3 JSON document")
    try:
        return [StampedLine(str(line["text"]), float(line["start"]), float(line["end"])) for line in data["lines"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a line lacks text, start or end: {exc}") from None


def read_timing(path: str | Path) -> TimingFile:
    """The timing in ``path`` (JSON when its text starts with ``{``, else LRC), its lines in the file's order.

    Raises BadInputError naming the file when it cannot be read or holds no timed line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read the timing file {path}: {exc}") from None
    kind = "json" if text.lstrip().startswith("{") else "lrc"
    try:
        lines = parse_json(text) if kind == "json" else lrc_in_file_order(text)
    except ValueError as exc:
        raise BadInputError(f"{path} is not a usable sow-qwen3 JSON file: {exc}") from None
    if not lines:
        raise BadInputError(f"{path} holds no timed lyric line (expected LRC [mm:ss.xx] stamps or our JSON)")
    return TimingFile(tuple(lines), kind, str(path))
