"""Lyrics text: decoding, and turning lyrics as people write them into the lines that get timed.

``sung_lines`` drops section markers and expands repeat notation (the grammar
of one line is in ``lyric_notation``). Across lines:

* a BLOCK is the sung lines since the previous blank line, section marker or
  repeat line;
* a repeat line (``x2`` alone) sings the block before it that many times in
  all; it then ends the block;
* a section marker followed by sung text is a HEADER: the text up to the next
  blank line, marker or repeat line is that section's lines (a later header
  with the same name replaces them). A count on a header (``[Chorus x2]``)
  sings the section that many times;
* a section marker followed by no text (the next non-blank line is a marker
  or a repeat line, or the lyrics end) is a REFERENCE: it sings the lines of
  the section of the same name given earlier (times its count), and they form
  a block that a following repeat line repeats. A reference to a section not
  given earlier sings nothing;
* markers and repeat lines are never sung; they are returned as skipped lines
  with their 0-based source line number.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sow_qwen3_contract.response import Skipped

from .errors import InvalidRequest
from .lyric_notation import RepeatLine, SectionMarker, classify_line

MAX_REPEAT = 20  # the most times one notation may sing a line, block or section
MAX_SUNG_LINES = 5000  # far above any song; stops a request from expanding without bound


@dataclass(frozen=True)
class SungLyrics:
    """The lines to time, each sung occurrence once, and the source lines that are not sung."""

    lines: list[str]
    skipped: list[Skipped]


def decode_utf8(raw: bytes, what: str) -> str:
    """Decode ``raw`` as UTF-8 (a leading BOM is dropped).

    Raises InvalidRequest naming ``what`` and the offending byte otherwise.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"{what} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None


def sung_lines(text: str) -> SungLyrics:
    """The lines of ``text`` to time, in singing order, markers dropped and repeats expanded.

    Source lines are split at any Unicode line boundary (``str.splitlines``)
    and stripped; blank lines are dropped. Raises InvalidRequest for a count
    below 1 or above MAX_REPEAT (naming the line), for an expansion past
    MAX_SUNG_LINES lines, and when no line is left to sing.
    """
    expansion = _Expansion()
    for index, line in enumerate(text.splitlines()):
        expansion.feed(index, line.strip())
    expansion.finish()
    if not expansion.lines:
        if expansion.skipped:
            raise InvalidRequest(
                "LYRICS has no line to sing: every line is a section marker or repeat notation"
            )
        raise InvalidRequest("LYRICS is empty: send the song's lyrics, one lyric line per text line")
    return SungLyrics(expansion.lines, expansion.skipped)


@dataclass
class _Expansion:
    """The state of ``sung_lines`` while it reads the source lines in order."""

    lines: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)
    block: list[str] = field(default_factory=list)  # sung lines of the current block, as written
    header: SectionMarker | None = None  # the header whose section the current block is
    pending: SectionMarker | None = None  # a marker not yet known to be a header or a reference

    def feed(self, index: int, line: str) -> None:
        if not line:
            self._end_block()
            return
        kind = classify_line(line)
        if isinstance(kind, SectionMarker):
            self._resolve_pending(starts_text=False)
            self._end_block()
            self.skipped.append(Skipped(index, line))
            self.pending = SectionMarker(kind.key, _bounded(kind.count, index, line))
        elif isinstance(kind, RepeatLine):
            self.skipped.append(Skipped(index, line))
            count = _bounded(kind.count, index, line)
            self._resolve_pending(starts_text=False)
            sung = self._end_block()
            self._sing(sung * (count - 1))
        else:
            self._resolve_pending(starts_text=True)
            self._sing_in_block([kind.text] * _bounded(kind.count, index, line))

    def finish(self) -> None:
        self._resolve_pending(starts_text=False)
        self._end_block()

    def _resolve_pending(self, starts_text: bool) -> None:
        marker, self.pending = self.pending, None
        if marker is None:
            return
        if starts_text:
            self.header = marker
            return
        section = self.sections.get(marker.key, [])
        self._sing_in_block(section * (marker.count or 1))

    def _end_block(self) -> list[str]:
        """End the current block; returns its lines as sung (a header's count applied)."""
        block, header = self.block, self.header
        self.block, self.header = [], None
        if header is None:
            return block
        self.sections[header.key] = block
        self._sing(block * ((header.count or 1) - 1))
        return block * (header.count or 1)

    def _sing_in_block(self, lines: list[str]) -> None:
        self._sing(lines)
        self.block.extend(lines)

    def _sing(self, lines: list[str]) -> None:
        if len(self.lines) + len(lines) > MAX_SUNG_LINES:
            raise InvalidRequest(
                f"LYRICS expand to more than {MAX_SUNG_LINES} lines once repeats are sung out; check the repeat counts"
            )
        self.lines.extend(lines)


def _bounded(count: int | None, index: int, line: str) -> int | None:
    """``count`` when it is None or 1..MAX_REPEAT; InvalidRequest naming the 1-based line otherwise."""
    if count is not None and not 1 <= count <= MAX_REPEAT:
        raise InvalidRequest(
            f"LYRICS line {index + 1} ({line[:60]!r}) asks for {count} repeats; a line, block or section "
            f"may be sung 1 to {MAX_REPEAT} times"
        )
    return count
