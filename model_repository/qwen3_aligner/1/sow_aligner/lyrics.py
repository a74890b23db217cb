"""Lyrics text: decoding and splitting into the lines that get timed."""
from __future__ import annotations

from .errors import InvalidRequest


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


def split_lines(text: str) -> list[str]:
    """The lyric lines to time: every line that is not blank, stripped, in order.

    Any Unicode line boundary separates lines (\\n, \\r\\n, \\r, U+2028 ...).
    """
    return [line.strip() for line in text.splitlines() if line.strip()]
