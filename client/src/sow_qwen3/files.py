"""Reading lyrics files and writing results, the way every CLI command does it."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import BadInputError


def read_lyrics(path: str | Path) -> str:
    """The lyrics in ``path`` (UTF-8; a BOM is dropped; ``-`` reads stdin).

    Raises BadInputError naming the file when it cannot be read or is not UTF-8.
    """
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read the lyrics file {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"the lyrics file {path} is not valid UTF-8 (bad byte at offset {exc.start})") from None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that ``path`` holds either all of it or what it held before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
