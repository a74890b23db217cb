"""Align a whole catalogue from a manifest, several songs in flight, resumable.

Manifest: CSV, or TSV (a ``.tsv`` name or a tab in the first row), one row per
song: ``source, lyrics[, language[, name]]``. A first row whose first cell is
``source`` is a header, and may then name the columns in any order. Blank rows
and rows starting with ``#`` are skipped. Relative lyrics paths and relative
local audio paths are relative to the manifest's folder. ``name`` (default:
the stem of the source's file name) is the output file's stem.

Each song's result is written to ``DIR/<name>.<format>`` in one atomic step,
so a file that exists is finished: a second run skips it. A failed song is
recorded and the rest go on. ``DIR/quality.csv`` gets one row per aligned song
(name, verdict, mean voiced fraction, flagged lines), rows of earlier runs kept,
and the summary counts the verdicts.
"""
from __future__ import annotations

import csv
import io
import queue
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

from sow_qwen3_contract.quality import VERDICTS

from .client import Client
from .errors import AlignError
from .files import PartialFiles, read_lyrics, write_atomically
from .formats import SongQuality

COLUMNS = ("source", "lyrics", "language", "name")
QUALITY_FILE = "quality.csv"
QUALITY_COLUMNS = ("name", "verdict", "mean_voiced_fraction", "flagged_lines")
BAR_WIDTH = 30


class ManifestError(ValueError):
    """The manifest cannot be used as it is; the message names the row."""


@dataclass(frozen=True)
class Song:
    row: int  # line number in the manifest
    source: str
    lyrics: Path
    language: str
    name: str

    def output(self, out_dir: Path, format: str) -> Path:  # noqa: A002
        return out_dir / f"{self.name}.{format}"


@dataclass
class Summary:
    total: int
    aligned: int = 0
    skipped: int = 0
    failures: list[tuple[Song, str]] = field(default_factory=list)
    interrupted: bool = False
    qualities: dict[str, SongQuality] = field(default_factory=dict)  # song name -> verdict, this run

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def finished(self) -> int:
        return self.aligned + self.skipped + self.failed

    def counts(self) -> str:
        return f"{self.aligned} aligned, {self.skipped} already done, {self.failed} failed"

    def verdict_counts(self) -> str:
        verdicts = [quality.verdict for quality in self.qualities.values()]
        return ", ".join(f"{verdicts.count(verdict)} {verdict}" for verdict in VERDICTS)


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme.lower() in ("s3", "http", "https", "file")


def _default_name(source: str) -> str:
    path = urllib.parse.urlparse(source).path if _is_url(source) else source
    return PurePosixPath(urllib.parse.unquote(path).replace("\\", "/")).stem


def read_manifest(path: Path, language: str) -> list[Song]:
    """The songs ``path`` lists; ``language`` is the default for rows without one.

    Raises ManifestError for an unreadable manifest, a row without a source or
    lyrics, unknown header columns, or two songs that would write the same file.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc}") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in first else ","
    columns: tuple[str, ...] = COLUMNS
    songs: list[Song] = []
    seen: dict[str, int] = {}
    header_done = False
    for number, cells in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [cell.strip() for cell in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not header_done:
            header_done = True
            if cells[0].lower() == "source":
                columns = tuple(cell.lower() for cell in cells)
                unknown = sorted(set(columns) - set(COLUMNS))
                if unknown or "lyrics" not in columns:
                    raise ManifestError(f"{path} row {number}: header columns must be among {', '.join(COLUMNS)} "
                                        f"and include source and lyrics; got {', '.join(cells)}")
                continue
        values = dict(zip(columns, cells))
        if len(cells) > len(columns):
            raise ManifestError(f"{path} row {number}: {len(cells)} cells; expected at most {len(columns)} "
                                f"({', '.join(columns)})")
        source, lyrics = values.get("source", ""), values.get("lyrics", "")
        if not source or not lyrics:
            raise ManifestError(f"{path} row {number}: needs a source and a lyrics file")
        if not _is_url(source) and not Path(source).is_absolute():
            source = str(path.parent / source)
        name = values.get("name") or _default_name(source)
        if not name or "/" in name or name.startswith("."):
            raise ManifestError(f"{path} row {number}: {name!r} cannot name an output file")
        if name in seen:
            raise ManifestError(f"{path} rows {seen[name]} and {number} would both write {name}.*; "
                                "give them different names in a name column")
        seen[name] = number
        songs.append(Song(number, source, path.parent / lyrics, values.get("language") or language, name))
    if not songs:
        raise ManifestError(f"{path} lists no songs")
    return songs


class Progress:
    """A one-line progress bar when ``stream`` is a terminal; otherwise one line per finished song."""

    def __init__(self, summary: Summary, stream: TextIO) -> None:
        self.summary = summary
        self.stream = stream
        self.bar = stream.isatty()

    def song(self, song: Song, error: str | None, note: str) -> None:
        if error is not None:
            self._line(f"FAILED {song.name} (row {song.row}): {error}")
        elif not self.bar:
            self._line(f"done {song.name}: {note}")
        self.draw()

    def draw(self) -> None:
        if not self.bar:
            return
        summary = self.summary
        filled = BAR_WIDTH * summary.finished // max(summary.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {summary.finished}/{summary.total} "
                          f"({summary.counts()})")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.bar else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar:
            self.stream.write("\n")
            self.stream.flush()


def run_batch(client: Client, songs: list[Song], out_dir: Path, *, concurrency: int, format: str,  # noqa: A002
              stream: TextIO) -> Summary:
    """Align every song of ``songs`` whose output does not exist yet, ``concurrency`` at a time.

    Returns the summary after printing it to ``stream``. Ctrl-C (KeyboardInterrupt)
    stops taking new songs, prints the summary and returns with ``interrupted``
    set; songs still in flight are abandoned: their outputs never appear, and
    no temporary ``.partial`` file of theirs is left in ``out_dir``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(total=len(songs))
    progress = Progress(summary, stream)
    todo: queue.SimpleQueue[Song] = queue.SimpleQueue()
    for song in songs:
        if song.output(out_dir, format).exists():
            summary.skipped += 1
        else:
            todo.put(song)
    pending = summary.total - summary.skipped
    finished = threading.Condition()  # guards summary and progress; notified as each song is recorded
    stop = threading.Event()
    partials = PartialFiles()

    def record(song: Song, error: str | None, note: str, quality: SongQuality | None) -> None:
        """Count one song, in the thread that aligned it, before that thread takes another: a result
        is never in flight between threads when Ctrl-C lands. After the interrupt nothing is counted."""
        with finished:
            if summary.interrupted:
                return
            if error is None:
                summary.aligned += 1
                summary.qualities[song.name] = quality
            else:
                summary.failures.append((song, error))
            progress.song(song, error, note)
            finished.notify()

    def work() -> None:
        while not stop.is_set():
            try:
                song = todo.get_nowait()
            except queue.Empty:
                return
            started = time.monotonic()
            try:
                result = client.align(song.source, read_lyrics(song.lyrics), language=song.language, format=format)
                if stop.is_set():
                    return
                write_atomically(song.output(out_dir, format), result.content, partials)
            except Exception as exc:  # one song's failure, foreseen or not, must not stop the others
                if stop.is_set():
                    return  # interrupted meanwhile (WriteAbandoned, say): the song is abandoned, not failed
                unforeseen = "" if isinstance(exc, AlignError) else "unexpected "
                record(song, f"{unforeseen}{type(exc).__name__}: {exc}", "", None)
            else:
                record(song, None, f"{result.line_count} lines in {time.monotonic() - started:.1f} s, "
                                   f"{result.quality.verdict}", result.quality)

    progress.draw()
    # Daemon threads: after Ctrl-C the process exits without waiting for requests in flight.
    for index in range(min(concurrency, pending)):
        threading.Thread(target=work, name=f"align-{index}", daemon=True).start()
    try:
        with finished:
            finished.wait_for(lambda: summary.finished == summary.total)
    except KeyboardInterrupt:
        stop.set()
        partials.remove_all()  # writes still in progress never finish: leave no .partial behind
        with finished:
            summary.interrupted = True
    progress.close()
    if summary.qualities:
        write_quality_csv(out_dir / QUALITY_FILE, summary.qualities)
    _print_summary(summary, out_dir, stream)
    return summary


def write_quality_csv(path: Path, qualities: dict[str, SongQuality]) -> None:
    """Write ``qualities`` to ``path``, keeping the rows of other songs already in it and every column (such as
    ``reviewed``, which align-batch never sets: it never aligns a song whose output exists)."""
    current = path.read_text(encoding="utf-8") if path.exists() else None
    rows = {name: quality_columns(quality) for name, quality in qualities.items()}
    write_atomically(path, updated_quality_csv(current, rows))


def quality_columns(quality: SongQuality) -> dict[str, str]:
    """The QUALITY_COLUMNS of ``quality`` after the name, as quality.csv writes them."""
    mean = "" if quality.mean_voiced_fraction is None else f"{quality.mean_voiced_fraction:.3f}"
    return {"verdict": quality.verdict, "mean_voiced_fraction": mean, "flagged_lines": str(quality.flagged_lines)}


def updated_quality_csv(current: str | None, rows: Mapping[str, Mapping[str, str]]) -> str:
    """``quality.csv``'s text ``current`` (None: no file yet) with the row of each name in ``rows`` updated.

    The other rows and any column the file already has are kept; QUALITY_COLUMNS
    and the columns named in ``rows`` are added where missing; rows are sorted by name.
    """
    header, kept = list(QUALITY_COLUMNS), {}
    if current:
        reader = csv.DictReader(io.StringIO(current))
        header += [column for column in reader.fieldnames or () if column not in header]
        kept = {row["name"]: row for row in reader if row.get("name")}
    for name, columns in rows.items():
        header += [column for column in columns if column not in header]
        kept[name] = {**kept.get(name, {}), **columns, "name": name}
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept[name] for name in sorted(kept))
    return out.getvalue()


def _print_summary(summary: Summary, out_dir: Path, stream: TextIO) -> None:
    print(f"align-batch: {summary.total} songs: {summary.counts()}; outputs in {out_dir}", file=stream)
    if summary.qualities:
        print(f"align-batch: quality of the {len(summary.qualities)} songs aligned now: {summary.verdict_counts()} "
              f"(per song in {out_dir / QUALITY_FILE})", file=stream)
    if summary.interrupted:
        print(f"align-batch: interrupted with {summary.total - summary.finished} songs not done; "
              "run the same command again to resume", file=stream)
    if summary.failures:
        print("failed songs:", file=stream)
        for song, error in sorted(summary.failures, key=lambda failure: failure[0].row):
            print(f"  row {song.row} {song.source}: {error}", file=stream)
