"""The songs under review: where they come from, their audio and timings, and what each change does to them.

A catalogue is either the songs of a manifest whose outputs lie in the
``align-batch`` folder (``folder_entries``), or one song: an audio source and
its LRC or JSON file (``single_entry``). A song's name is its output's stem;
the names are the only way the API reaches a song, and every path the
catalogue reads or writes is the song's source or one of its own files in its
folder (``NAME.lrc``, ``NAME.json``, ``NAME.orig.*``, the folder's
``quality.csv``).

A song is loaded on first use (audio fetched and decoded, voiced segments from
the server's silero_vad, evidence judged): ``Catalogue.song``. ``NAME.orig.json``
or ``NAME.orig.lrc``, once a save made it, holds the aligner's output; a line
whose times differ from it is ``edited``. The song is ``reviewed`` once saved
through the review (its ``.orig`` copy exists).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from sow_qwen3_contract.quality import FAIL, PASS, REVIEW, Thresholds
from sow_qwen3_contract.response import Line
from sow_qwen3_contract.tensors import SAMPLE_RATE

from ..audio import load_audio
from ..batch import QUALITY_FILE, quality_columns, read_manifest, updated_quality_csv
from ..client import Client
from ..errors import AlignError, BadInputError
from ..files import ORIGINAL_TAG, TIMING_KINDS
from ..formats import known, line_data, quality_data, to_json, to_lrc
from ..sources import fetched_audio
from ..timings import read_timing
from .evidence import MODEL_FLAGS, Judgement, Timed, judge
from .saving import write_all

REVIEWED_COLUMN = "reviewed"  # quality.csv's column: "yes" once a song is saved from the page

log = logging.getLogger("sow_qwen3.review")

PLAYABLE = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
            ".flac": "audio/flac", ".webm": "audio/webm"}  # what browsers play as the file is
REALIGN_MARGIN_S = 0.5  # audio beyond the neighbouring lines' times sent with a span to re-align
MIN_REALIGN_S = 0.5
ENVELOPE_BIN_S = 0.02
VERDICT_RANK = {FAIL: 0, REVIEW: 1, PASS: 2}  # worst first


class BadRequest(ValueError):
    """A change or question the song cannot take; the message says why (HTTP 400)."""


class UnknownSong(KeyError):
    """No song of the catalogue has this name (HTTP 404)."""


class SongUnavailable(RuntimeError):
    """The song cannot be loaded or re-aligned (its audio, the server); the message says why."""


@dataclass(frozen=True)
class Entry:
    """Where one song's audio, timing and quality record are."""

    name: str
    source: str
    language: str | None  # None: the JSON's language, else the catalogue's default
    folder: Path
    kind: str  # "json" or "lrc": the song's output
    quality_file: Path | None  # the folder's quality.csv (None for a single song)

    def path(self, kind: str, original: bool = False) -> Path:
        return self.folder / f"{self.name}{'.' + ORIGINAL_TAG if original else ''}.{kind}"

    @property
    def reviewed(self) -> bool:
        return self.path(self.kind, original=True).is_file()


def folder_entries(manifest: Path, out_dir: Path, language: str) -> tuple[list[Entry], list[str]]:
    """The songs of ``manifest`` that have an output in ``out_dir`` (JSON preferred), and the names without one.

    Raises batch.ManifestError for a manifest that cannot be used.
    """
    entries, missing = [], []
    for song in read_manifest(manifest, language):
        kind = next((kind for kind in TIMING_KINDS if (out_dir / f"{song.name}.{kind}").is_file()), None)
        if kind is None:
            missing.append(song.name)
        else:
            entries.append(Entry(song.name, song.source, song.language, out_dir, kind, out_dir / QUALITY_FILE))
    return entries, missing


def single_entry(source: str, timing: Path, language: str | None) -> Entry:
    """One song: ``source``'s audio timed by ``timing`` (NAME.lrc or NAME.json), saved beside it.

    Raises BadInputError when the timing file's name does not end in .lrc or .json.
    """
    kind = timing.suffix.lower().lstrip(".")
    if kind not in TIMING_KINDS or not timing.stem:
        raise BadInputError(f"{timing}: the timing file must be NAME.lrc or NAME.json")
    return Entry(timing.stem, source, language, timing.parent, kind, None)


@dataclass(frozen=True)
class Playable:
    """The song's audio for the browser: a file served as it is, or decoded WAV bytes."""

    content_type: str
    path: Path | None = None
    data: bytes = b""

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data)

    def chunks(self, start: int, end: int, size: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive), in pieces of at most ``size``, the file opened once."""
        if self.path is None:
            for at in range(start, end + 1, size):
                yield self.data[at:min(at + size, end + 1)]
            return
        with self.path.open("rb") as file:
            file.seek(start)
            left = end - start + 1
            while left > 0 and (chunk := file.read(min(size, left))):
                left -= len(chunk)
                yield chunk


@dataclass
class Song:
    """One loaded song: its audio, voiced segments, the aligner's output and the times saved now."""

    entry: Entry
    samples: np.ndarray = field(repr=False)
    segments: tuple[tuple[float, float], ...] | None  # None: voice activity could not be measured
    vad_note: str  # why not, when not
    baseline: tuple[Timed, ...]  # the aligner's output
    current: tuple[Timed, ...]  # the times in the song's file now
    document: dict | None  # the song's JSON document (None for an LRC song)
    playable: Playable
    language: str
    judgement: Judgement
    proposals: dict[int, Timed] = field(default_factory=dict)  # index -> the latest re-aligned times offered
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def duration(self) -> float:
        return self.samples.size / SAMPLE_RATE


class Catalogue:
    """The songs under review, loaded on first use; safe to share between the server's threads."""

    def __init__(self, entries: Sequence[Entry], client: Client, thresholds: Thresholds, scratch: Path,
                 language: str = "Chinese") -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.client = client
        self.thresholds = thresholds
        self.scratch = scratch  # the review's own temporary folder (remote sources' audio)
        self.language = language
        self._songs: dict[str, Song] = {}
        self._errors: dict[str, str] = {}
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in self.entries}

    # ------------------------------------------------------------------ queue
    def summaries(self) -> list[dict]:
        """Every song, worst first (fail, review, pass; then not yet judged), then by name."""
        recorded: dict[Path, dict[str, dict[str, str]]] = {}  # each quality.csv read once
        rows = [self._summary(entry, recorded) for entry in self.entries.values()]
        return sorted(rows, key=lambda row: (VERDICT_RANK.get(row["verdict"], len(VERDICT_RANK)), row["name"]))

    def _summary(self, entry: Entry, recorded: dict[Path, dict[str, dict[str, str]]]) -> dict:
        song = self._songs.get(entry.name)
        if song is not None:
            verdict, flagged = song.judgement.verdict, song.judgement.flagged_lines
        else:
            if entry.quality_file is not None and entry.quality_file not in recorded:
                recorded[entry.quality_file] = quality_rows(entry.quality_file)
            verdict, flagged = recorded_quality(entry, recorded.get(entry.quality_file, {}))
        return {"name": entry.name, "verdict": verdict, "flagged_lines": flagged, "reviewed": entry.reviewed,
                "loaded": song is not None, "error": self._errors.get(entry.name)}

    def load_all(self) -> None:
        """Load every song, worst recorded verdict first, so the queue shows fresh verdicts (a background task)."""
        for row in self.summaries():
            try:
                self.song(row["name"])
            except SongUnavailable:
                pass  # recorded in the summary's error

    # ------------------------------------------------------------------ one song
    def song(self, name: str) -> Song:
        """The loaded song ``name``; raises UnknownSong, or SongUnavailable when it cannot be loaded."""
        entry = self.entries.get(name)
        if entry is None:
            raise UnknownSong(name)
        with self._loading[name]:
            if name not in self._songs:
                try:
                    self._songs[name] = self._load(entry)
                except (AlignError, OSError, ValueError) as exc:
                    self._errors[name] = f"{type(exc).__name__}: {exc}"
                    raise SongUnavailable(f"cannot load {name}: {self._errors[name]}") from None
                self._errors.pop(name, None)
            return self._songs[name]

    def _load(self, entry: Entry) -> Song:
        client = self.client
        with fetched_audio(entry.source, s3=client.s3, max_bytes=client.max_download_bytes,
                           max_seconds=client.max_audio_seconds, timeout=client.timeout) as fetched:
            samples = load_audio(fetched.path, client.max_audio_seconds, name=entry.source)
            playable = self._playable(entry, fetched.path, samples)
        try:
            segments, note = client.voice_activity(samples).segments, ""
        except AlignError as exc:  # judged as the server does without its VAD: vad_unavailable
            segments, note = None, f"voice activity not measured: {exc}"
            log.warning("%s: %s", entry.name, note)
        document = read_document(entry.path("json")) if entry.kind == "json" else None
        current = read_lines(entry.path(entry.kind)) if document is None else document_lines(document, entry.path("json"))
        original = entry.path(entry.kind, original=True)
        baseline = read_lines(original) if original.is_file() else current
        if len(baseline) != len(current) or any(a.text != b.text for a, b in zip(baseline, current)):
            baseline = current  # the .orig copy is of other lyrics: the file itself is the aligner's
        current = tuple(line if line.same_times(base) else base.moved(line.start, line.end)
                        for line, base in zip(current, baseline))
        language = entry.language or (document or {}).get("language") or self.language
        duration = samples.size / SAMPLE_RATE
        return Song(entry, samples, segments, note, baseline, current, document, playable, language,
                    judge(current, duration, segments, self.thresholds))

    def _playable(self, entry: Entry, path: Path, samples: np.ndarray) -> Playable:
        content_type = PLAYABLE.get(path.suffix.lower())
        if content_type is None:  # a format browsers do not play: the decoded audio as 16-bit WAV
            out = io.BytesIO()
            soundfile.write(out, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
            return Playable("audio/wav", data=out.getvalue())
        if path.resolve() == Path(entry.source.removeprefix("file://")).resolve():
            return Playable(content_type, path=path)
        kept = self.scratch / f"{list(self.entries).index(entry.name)}{path.suffix.lower()}"  # remote: keep a copy
        shutil.copyfile(path, kept)
        return Playable(content_type, path=kept)

    def view(self, name: str, lines: Sequence[Timed] | None = None) -> dict:
        """The song as GET /api/songs/NAME shows it: saved times, or ``lines`` judged in their place."""
        song = self.song(name)
        judgement = song.judgement if lines is None else judge(lines, song.duration, song.segments, self.thresholds)
        return {"name": name, "kind": song.entry.kind, "duration_seconds": round(song.duration, 3),
                "verdict": judgement.verdict, "mean_voiced_fraction": known(judgement.mean_voiced_fraction),
                "flagged_lines": judgement.flagged_lines, "reviewed": song.entry.reviewed,
                "vad_note": song.vad_note or None,
                "voiced": [[round(start, 3), round(end, 3)] for start, end in song.segments or ()],
                "lines": [line.data() for line in judgement.lines]}

    def envelope(self, name: str) -> dict:
        """The waveform's envelope: the peak of |sample| over each ENVELOPE_BIN_S, to 3 decimals."""
        samples = self.song(name).samples
        width = int(ENVELOPE_BIN_S * SAMPLE_RATE)
        count = math.ceil(samples.size / width)
        padded = np.zeros(count * width, dtype=np.float32)
        padded[:samples.size] = np.abs(samples)
        peaks = padded.reshape(count, width).max(axis=1)
        return {"seconds_per_bin": ENVELOPE_BIN_S, "peaks": [round(float(peak), 3) for peak in peaks]}

    # ------------------------------------------------------------------ changes
    def changed(self, name: str, body: object) -> list[Timed]:
        """The song's lines with the changes of a request ``body`` ({"lines": [{"index", "start"[, "end"]}]}).

        Lines the body leaves out keep their saved times. For a JSON song a
        line given no ``end`` keeps its length (to the audio's end at most); an
        LRC song's lines have no end. Raises BadRequest unless every index
        exists (once), every time is a number within the audio, no end lies
        before its start and the starts never decrease.
        """
        song = self.song(name)
        if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
            raise BadRequest('expected {"lines": [{"index": i, "start": seconds}, ...]}')
        lines = list(song.current)
        seen: set[int] = set()
        for item in body["lines"]:
            if not isinstance(item, dict) or set(item) - {"index", "start", "end"}:
                raise BadRequest(f'each line is {{"index", "start"[, "end"]}}; got {item!r}')
            index = item.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(lines):
                raise BadRequest(f"no line with index {index!r}: the song has lines 0 to {len(lines) - 1}")
            if index in seen:
                raise BadRequest(f"line {index} is given twice")
            seen.add(index)
            start = self._time(item.get("start"), f"line {index}'s start", song.duration)
            old = lines[index]
            if "end" in item:
                if old.end is None:
                    raise BadRequest(f"line {index}: an LRC line has no end")
                end = self._time(item["end"], f"line {index}'s end", song.duration)
                if end < start:
                    raise BadRequest(f"line {index} would end ({end:.3f} s) before it starts ({start:.3f} s)")
            else:
                end = None if old.end is None else min(song.duration, start + (old.end - old.start))
            lines[index] = self._at(song, index, start, end)
        for index in range(1, len(lines)):
            if lines[index].start < lines[index - 1].start:
                raise BadRequest(f"starts must never decrease: line {index} would start at {lines[index].start:.3f} s, "
                                 f"before line {index - 1} ({lines[index - 1].start:.3f} s)")
        return lines

    @staticmethod
    def _time(value: object, what: str, duration: float) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise BadRequest(f"{what} must be a number of seconds; got {value!r}")
        if not 0 <= value <= duration:
            raise BadRequest(f"{what} ({value} s) lies outside the audio (0 to {duration:.3f} s)")
        return float(value)

    @staticmethod
    def _at(song: Song, index: int, start: float, end: float | None) -> Timed:
        """Line ``index`` at these times, with the aligner's evidence when they are times the aligner gave."""
        wanted = Timed(song.baseline[index].text, start, end)
        for candidate in (song.baseline[index], song.proposals.get(index)):
            if candidate is not None and candidate.same_times(wanted):
                return candidate
        return song.baseline[index].moved(start, end)

    def judged(self, name: str, body: object) -> dict:
        """The song with the changes of ``body`` judged, nothing saved (POST .../judge)."""
        return self.view(name, self.changed(name, body))

    def save(self, name: str, body: object) -> dict:
        """Apply the changes of ``body``, write the song's files in one step, and answer the song as GET does.

        Writes NAME.lrc, and NAME.json for a JSON song (times, evidence and
        ``edited`` marks updated); the first save keeps the aligner's output as
        NAME.orig.*; the folder's quality.csv gets the verdict and ``reviewed``.
        Raises BadRequest (nothing written) or OSError (nothing changed).
        """
        song = self.song(name)
        with song.lock:
            lines = self.changed(name, body)
            judgement = judge(lines, song.duration, song.segments, self.thresholds)
            entry = song.entry
            texts: dict = {}
            if not entry.reviewed:
                for kind in TIMING_KINDS:
                    if entry.path(kind).is_file():
                        texts[entry.path(kind, original=True)] = entry.path(kind).read_text(encoding="utf-8")
            document = None
            if song.document is not None:
                document = updated_document(song.document, lines, judgement)
                texts[entry.path("json")] = to_json(document)
            texts[entry.path("lrc")] = to_lrc([Line(line.text, line.start, line.end or line.start) for line in lines],
                                              song.duration)
            if entry.quality_file is not None:
                current = entry.quality_file.read_text(encoding="utf-8") if entry.quality_file.is_file() else None
                texts[entry.quality_file] = updated_quality_csv(
                    current, {name: {**quality_columns(judgement.quality), REVIEWED_COLUMN: "yes"}})
            write_all(texts)
            song.current, song.document, song.judgement = tuple(lines), document, judgement
        return self.view(name)

    # ------------------------------------------------------------------ re-align
    def realign(self, name: str, body: object) -> dict:
        """Re-align lines ``first``..``last`` of ``body`` (with its optional ``lines`` changes in place).

        The audio from the previous line's end (its start in an LRC) to the
        next line's start (the audio's ends at the edges), widened by
        REALIGN_MARGIN_S, goes to qwen3_aligner with those lines' text; its
        times are shifted back to song time and kept between the neighbours'
        starts, so accepting them keeps the starts in order. Answers the
        proposal's lines as GET shows lines, judged in the song with them in
        place, and that song's verdict; nothing is saved. Raises BadRequest or
        SongUnavailable (the server failed or answered other lines).
        """
        song = self.song(name)
        if not isinstance(body, dict):
            raise BadRequest('expected {"first": i, "last": j}')
        first, last = body.get("first"), body.get("last")
        count = len(song.current)
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in (first, last)) \
                or not 0 <= first <= last < count:
            raise BadRequest(f"first and last must be line indices with first <= last, from 0 to {count - 1}; "
                             f"got {first!r} and {last!r}")
        lines = self.changed(name, {"lines": body.get("lines", [])})
        before = lines[first - 1] if first > 0 else None
        after_start = lines[last + 1].start if last + 1 < count else song.duration
        floor = 0.0 if before is None else before.start
        before_end = floor if before is None or before.end is None else before.end
        low = max(0.0, before_end - REALIGN_MARGIN_S)
        high = min(song.duration, after_start + REALIGN_MARGIN_S)
        if high - low < MIN_REALIGN_S:
            raise BadRequest(f"lines {first}-{last} have only {high - low:.2f} s of audio between their neighbours")
        run = lines[first:last + 1]
        clip = song.samples[int(low * SAMPLE_RATE):int(math.ceil(high * SAMPLE_RATE))]
        try:
            answer = self.client.align_samples(clip, "\n".join(line.text for line in run), song.language)
        except AlignError as exc:
            raise SongUnavailable(f"re-align failed: {exc}") from None
        if len(answer.lines) != len(run):
            raise SongUnavailable(f"re-align failed: the aligner timed {len(answer.lines)} lines for the "
                                  f"{len(run)} sent (a line it read as notation?)")
        proposal = []
        previous = floor
        for line, timed in zip(run, answer.lines):
            start = min(max(previous, timed.start + low), after_start)
            end = None if line.end is None else min(max(start, timed.end + low), song.duration)
            flags = tuple(code for code in timed.flags if code in MODEL_FLAGS)
            proposal.append(Timed(line.text, start, end, timed.confidence, flags, edited=True))
            previous = start
        with song.lock:
            song.proposals.update({first + offset: timed for offset, timed in enumerate(proposal)})
        lines[first:last + 1] = proposal
        view = self.view(name, lines)
        return {"first": first, "last": last, "low": round(low, 3), "high": round(high, 3),
                "verdict": view["verdict"], "flagged_lines": view["flagged_lines"],
                "lines": view["lines"][first:last + 1]}


def read_lines(path: Path) -> tuple[Timed, ...]:
    """The timed lines of an LRC (time order, as ``check``) or of our JSON (with the aligner's evidence)."""
    if path.suffix.lower() == ".json":
        return document_lines(read_document(path), path)
    timing = read_timing(path).in_time_order()
    return tuple(Timed(line.text, line.start, None) for line in timing.lines)


def read_document(path: Path) -> dict:
    """Our JSON document in ``path``; BadInputError when it cannot be read as one."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path} is not a usable sow-qwen3 JSON file: {exc}") from None
    if not isinstance(document, dict):
        raise BadInputError(f"{path} is not a usable sow-qwen3 JSON file: not a JSON object")
    return document


def document_lines(document: dict, path: Path) -> tuple[Timed, ...]:
    """The timed lines of our JSON ``document`` (read from ``path``), with the aligner's evidence."""
    try:
        return tuple(Timed(str(line["text"]), float(line["start"]), float(line["end"]),
                           None if line.get("confidence") is None else float(line["confidence"]),
                           tuple(code for code in line.get("flags") or () if code in MODEL_FLAGS),
                           recorded_voiced=None if line.get("voiced_fraction") is None
                           else float(line["voiced_fraction"]))
                     for line in document["lines"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInputError(f"{path} is not a usable sow-qwen3 JSON file: {exc}") from None


def updated_document(document: dict, lines: Sequence[Timed], judgement: Judgement) -> dict:
    """``document`` (our JSON) with the lines' new times and evidence, ``edited`` on each changed line."""
    old_lines = document.get("lines") or []
    new_lines = []
    for index, (line, judged) in enumerate(zip(lines, judgement.lines)):
        line_pass = (old_lines[index] if index < len(old_lines) else {}).get("pass")
        data = line_data(index, Line(line.text, line.start, judged.end, line.confidence, judged.voiced_fraction,
                                     judged.flags, line_pass))
        if line.edited:
            data["edited"] = True
        new_lines.append(data)
    return {**document, "quality": quality_data(judgement.quality), "lines": new_lines}


def quality_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a quality.csv by song name ({} when there is none)."""
    if not path.is_file():
        return {}
    return {row["name"]: row for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
            if row.get("name")}


def recorded_quality(entry: Entry, rows: dict[str, dict[str, str]]) -> tuple[str | None, int | None]:
    """The verdict and flagged lines the song's files record (its row of quality.csv, ``rows``, else the JSON),
    before it is loaded."""
    row = rows.get(entry.name, {})
    if row.get("verdict") in VERDICT_RANK:
        flagged = row.get("flagged_lines", "")
        return row["verdict"], int(flagged) if flagged.isdigit() else None
    if entry.kind == "json":
        try:
            quality = json.loads(entry.path("json").read_text(encoding="utf-8-sig")).get("quality") or {}
            return quality.get("verdict"), quality.get("flagged_lines")
        except (OSError, ValueError, AttributeError):
            pass
    return None, None
