"""What one lyric line is: sung text, a section marker, or a repeat count on its own.

The grammar is deliberately conservative: a line is notation only when it
matches one of the forms below exactly; anything else is sung text, aligned as
written. Matching ignores case; full-width brackets, colons and digits count
as their ASCII forms.

COUNT, the number of times a line or block is sung in all (``x2`` = twice):
  ``x2`` ``×2`` ``*2`` ``2x`` ``2×`` (a space may follow ``x``/``×``/``*``);
  ``repeat`` (twice), ``repeat x2``, ``repeat 2x``, ``repeat 2 times``;
  ``重复`` / ``反复`` (twice), ``重复2次``, ``重复两遍``, ``2遍``, ``三次``
  (digits or 一 to 九十九 and 两).

A line is, in this order:
  1. a repeat line: a COUNT alone, bare or in ``()`` or ``[]``;
  2. anything with a trailing COUNT: in ``()`` or ``[]`` after the text, or a
     bare ``x2``/``×2``/``*2``/``2x`` not glued to a preceding Latin letter or
     digit. The count is taken off and the rest is classified by 3-4;
  3. a section marker: the whole line in ``[...]`` or ``【...】`` (whatever it
     says: square brackets are never sung), or a SECTION NAME alone, bare or
     in ``(...)``, with an optional trailing colon. A marker may carry a
     COUNT (``[Chorus x2]``, ``Chorus (x2)``) and a ``repeat``/``重复`` prefix
     (``Repeat Chorus``);
  4. sung text, with its trailing COUNT if step 2 found one (else 1).
     A line in parentheses that is not a section name, e.g. ``(Hallelujah)``,
     is sung text.

SECTION NAME: an optional ``final``/``last``/``first``, one of
``SECTION_WORDS`` (English, hyphen and space optional: ``pre-chorus`` =
``prechorus``) or ``SECTION_WORDS_ZH``, and an optional number (digits,
Roman I-X, or 一 to 十).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

SECTION_WORDS = (
    "intro", "verse", "pre-chorus", "chorus", "post-chorus", "refrain", "bridge", "interlude",
    "instrumental", "breakdown", "vamp", "tag", "coda", "outro", "ending", "hook",
)
SECTION_WORDS_ZH = (
    "前奏", "主歌", "导歌", "導歌", "预副歌", "預副歌", "副歌", "桥段", "橋段", "间奏", "間奏",
    "过门", "過門", "尾声", "尾聲", "尾奏", "结尾", "結尾",
)

_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_NUMBER = r"(?:[一二两兩三四五六七八九]?十[一二三四五六七八九]?|[一二两兩三四五六七八九])"
_TIMES = r"[x×✕]"
_COUNT = re.compile(
    rf"(?:{_TIMES}|\*)\s*(?P<sym>\d+)"
    rf"|(?P<sym_after>\d+)\s*{_TIMES}"
    rf"|repeat(?:\s*(?:{_TIMES}\s*(?P<rep>\d+)|(?P<rep_after>\d+)\s*(?:{_TIMES}|times)))?"
    rf"|(?:重复|反复|重複|反覆)(?:\s*(?P<zh>\d+|{_ZH_NUMBER})\s*[次遍])?"
    rf"|(?P<times>\d+|{_ZH_NUMBER})\s*[次遍]",
    re.IGNORECASE,
)
# A trailing count without brackets: only the symbol forms, never glued to a Latin word or number.
_BARE_TRAILING_COUNT = re.compile(
    rf"(?<![A-Za-z0-9.])(?:(?:{_TIMES}|\*)\s*\d+|\d+{_TIMES})$", re.IGNORECASE
)
_OPEN = {"(": ")", "[": "]"}
_FULL_WIDTH = "（）［］：０１２３４５６７８９"
_SECTION_WORD = "|".join([word.replace("-", r"[\s\-]?") for word in SECTION_WORDS] + list(SECTION_WORDS_ZH))
_SECTION_NAME = re.compile(
    r"(?:(?:final|last|first)\s*)?"
    rf"(?:{_SECTION_WORD})"
    rf"\s*(?:\d+|(?:i{{1,3}}|iv|v|vi{{1,3}}|ix|x)(?![a-z])|{_ZH_NUMBER})?",
    re.IGNORECASE,
)
_REPEAT_PREFIX = re.compile(r"^(?:repeat\s+|重复|反复|重複|反覆)", re.IGNORECASE)


@dataclass(frozen=True)
class SungText:
    """Text to align, sung ``count`` times in a row."""

    text: str
    count: int = 1


@dataclass(frozen=True)
class SectionMarker:
    """A section marker. ``key`` names the section (equal keys are the same section);
    ``count`` is the COUNT it carries, None when it has none."""

    key: str
    count: int | None = None


@dataclass(frozen=True)
class RepeatLine:
    """A COUNT on its own line: the block before it is sung ``count`` times in all."""

    count: int


LineKind = SungText | SectionMarker | RepeatLine


def classify_line(line: str) -> LineKind:
    """What the stripped, non-blank ``line`` is (see the module docstring for the grammar).

    Counts are returned as written, 0 and huge ones included: the caller bounds them.
    """
    folded = _fold(line)
    count = _count(folded)
    if count is not None:
        return RepeatLine(count)
    body, count = _split_trailing_count(folded)  # body is not empty: a lone COUNT was caught above
    marker = _marker(body, count)
    if marker is not None:
        return marker
    return SungText(line[: len(body)].rstrip(), count or 1)


def _fold(line: str) -> str:
    """``line`` with full-width brackets, colon and digits in ASCII form and 【】 as [], character for character."""
    return "".join(
        unicodedata.normalize("NFKC", char) if char in _FULL_WIDTH else char for char in line
    ).replace("【", "[").replace("】", "]")


def _count(text: str) -> int | None:
    """The COUNT ``text`` is, bare or in brackets, or None when it is not one."""
    inner = _unwrap(text)
    match = _COUNT.fullmatch((inner if inner is not None else text).strip())
    if match is None:
        return None
    number = next((value for value in match.groupdict().values() if value), None)
    return 2 if number is None else _number(number)


def _number(text: str) -> int:
    """The value of digits or of a Chinese numeral 一 to 九十九 (两 = 2)."""
    if text.isdigit():
        return int(text)
    tens, ten, ones = text.partition("十")
    if not ten:
        return _ZH_DIGITS[text]
    return (_ZH_DIGITS[tens] if tens else 1) * 10 + (_ZH_DIGITS[ones] if ones else 0)


def _unwrap(text: str) -> str | None:
    """The inside of ``text`` when it is wholly in one pair of () or [], else None."""
    if len(text) >= 2 and _OPEN.get(text[0]) == text[-1] and text[-1] not in text[1:-1]:
        return text[1:-1].strip()
    return None


def _split_trailing_count(text: str) -> tuple[str, int | None]:
    """``text`` without a trailing COUNT, and that count (None when there is none)."""
    closing = text[-1]
    if closing in _OPEN.values():
        opening = text.rfind({v: k for k, v in _OPEN.items()}[closing])
        if opening >= 0:
            count = _count(text[opening:])
            if count is not None:
                return text[:opening].rstrip(), count
    bare = _BARE_TRAILING_COUNT.search(text)
    if bare is not None:
        return text[: bare.start()].rstrip(), _count(bare.group(0))
    return text, None


def _marker(body: str, count: int | None) -> SectionMarker | None:
    """The section marker ``body`` is (carrying ``count``), or None when it is sung text."""
    inner = _unwrap(body)
    if inner is not None and body[0] == "[":
        name, inner_count = _split_trailing_count(inner) if inner else ("", None)
        return SectionMarker(_key(name), _product(count, inner_count))
    name = (inner if inner is not None else body).rstrip(":").strip()
    if name:
        name, inner_count = _split_trailing_count(name)
        count = _product(count, inner_count)
    name = _REPEAT_PREFIX.sub("", name.rstrip(":").strip())
    match = _SECTION_NAME.fullmatch(name)
    if match is None:
        return None
    return SectionMarker(_key(name), count)


def _key(name: str) -> str:
    """A section's identity: case, spaces, hyphens and a trailing colon ignored."""
    return re.sub(r"[\s\-:]+", "", _REPEAT_PREFIX.sub("", name.strip().rstrip(":").strip())).casefold()


def _product(first: int | None, second: int | None) -> int | None:
    """Two counts found on one marker multiply; None is no count."""
    if first is None or second is None:
        return first if second is None else second
    return first * second
