"""Reading lyrics files and writing results, the way every CLI command does it."""
from __future__ import annotations

import os
import secrets
import sys
import threading
from pathlib import Path

from .errors import BadInputError

# A song's timing files in an output folder: NAME.json and/or NAME.lrc (the review saves both, with the same
# times), preferred in this order; NAME.orig.json / NAME.orig.lrc keep the aligner's output after a review.
TIMING_KINDS = ("json", "lrc")
ORIGINAL_TAG = "orig"


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


class WriteAbandoned(Exception):
    """A write was asked for after ``PartialFiles.remove_all``."""


class PartialFiles:
    """The temporary ``.partial`` files of writes in progress, so an interrupted run can remove them.

    Safe to share between threads. After ``remove_all`` no new one is
    created: ``create`` raises WriteAbandoned.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[Path] = set()
        self._closed = False

    def create(self, path: Path) -> tuple[Path, int]:
        """A new empty temporary file beside ``path`` and its open descriptor.

        Its mode is 0666 less the process's umask, as for any new file, so the
        finished output gets that mode too.
        """
        with self._lock:
            if self._closed:
                raise WriteAbandoned(f"not writing {path}: the run was interrupted")
            while True:
                temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
                try:
                    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                except FileExistsError:
                    continue
                self._paths.add(temporary)
                return temporary, handle

    def forget(self, temporary: Path) -> None:
        """``temporary`` was renamed into place or removed: nothing to clean up."""
        with self._lock:
            self._paths.discard(temporary)

    def remove_all(self) -> None:
        """Delete every temporary file still being written and refuse new ones."""
        with self._lock:
            self._closed = True
            for temporary in self._paths:
                temporary.unlink(missing_ok=True)
            self._paths.clear()


def write_atomically(path: Path, text: str, partials: PartialFiles | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that ``path`` holds either all of it or what it held before.

    The text goes to a temporary ``.partial`` file in the same folder, renamed
    over ``path`` when complete; ``partials``, when given, tracks it meanwhile.
    The new file's mode honours the umask.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partials = partials or PartialFiles()
    temporary, handle = partials.create(path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        partials.forget(temporary)
