"""Reading existing timings: an LRC file (starts only) or our JSON (starts and ends).

LRC: every ``[mm:ss.xx]`` stamp at the start of a line times that line's text
(a line with several stamps is sung several times); tags such as ``[ar:...]``
or ``[length: ...]``, lines without a stamp and stamps with no text are
skipped. Lines are returned in time order (stable for equal times).

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

    lines: tuple[StampedLine, ...]
    kind: str
    name: str


def parse_lrc(text: str) -> list[StampedLine]:
    """The timed lines of LRC ``text``, in time order."""
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
            lines.extend(StampedLine(rest, stamp, None) for stamp in stamps)
    return sorted(lines, key=lambda line: line.start)


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
    """The timing in ``path`` (JSON when its text starts with ``{``, else LRC).

    Raises BadInputError naming the file when it cannot be read or holds no timed line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read the timing file {path}: {exc}") from None
    kind = "json" if text.lstrip().startswith("{") else "lrc"
    try:
        lines = parse_json(text) if kind == "json" else parse_lrc(text)
    except ValueError as exc:
        raise BadInputError(f"{path} is not a usable sow-qwen3 JSON file: {exc}") from None
    if not lines:
        raise BadInputError(f"{path} holds no timed lyric line (expected LRC [mm:ss.xx] stamps or our JSON)")
    return TimingFile(tuple(lines), kind, str(path))
