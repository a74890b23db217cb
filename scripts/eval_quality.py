#!/usr/bin/env python3
"""How well does the service align your songs? Line-start errors with re-alignment off and on.

    eval_quality.py FOLDER [--model-dir DIR | --url OFF_URL --url ON_URL] [--language L]
                    [--out-dir DIR] [--log-dir DIR]

FOLDER holds songs: an audio file (.wav .flac .ogg .opus .mp3: what the client
decodes) and a reference LRC with the same stem (``song.mp3`` + ``song.lrc``). The lyrics
sent are ``song.txt`` when it exists (as people write them: section markers
and repeat notation are understood), else the reference LRC's lines in order.

Re-alignment is a server setting, so each mode needs its own server. By
default the script starts two local servers on DIR (default
$SOW_QWEN3_MODEL_PATH or /models/qwen3-forced-aligner), one after the other,
through scripts/serve.py on free loopback ports: "off" with
SOW_QWEN3_REALIGN_PASSES=0, "on" with config.pbtxt's ``realign_passes``;
both allow the longest song (SOW_QWEN3_MAX_AUDIO_SECONDS, at least
config.pbtxt's limit). With ``--url`` given twice it uses servers you already
run instead: the first with re-alignment off, the second with it on.

Each song is aligned once per mode (the client's JSON is written to
OUT_DIR/MODE/STEM.json) and compared with its reference LRC by the client's
``eval`` (``sow_qwen3.evaluate``). It prints one table: per mode and song,
then for all songs of the mode pooled, the mean and median absolute
line-start error, the share of lines within 0.3 s and within 1 s, the
flagged lines, the lines re-aligned (times from pass 2 or later) and the
wall seconds of the client's calls. A random-weight checkpoint
(scripts/make_tiny_model.py) is detected and the script says loudly that its
numbers mean nothing.

Exit status: 0 when every song was aligned in both modes, 1 when some failed
(they are listed under the table), 2 for bad arguments, a folder without
songs, or a config.pbtxt whose ``realign_passes`` is 0.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sow_qwen3.audio import load_audio
from sow_qwen3.client import Client
from sow_qwen3.errors import AlignError, BadInputError
from sow_qwen3.evaluate import EvalReport, evaluate
from sow_qwen3.formats import to_json
from sow_qwen3.timings import read_timing
from sow_qwen3_contract.limits import MAX_AUDIO_SECONDS_CEILING
from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_server.launcher import config_parameter
from sow_qwen3_tools import REPO
from sow_qwen3_tools.local_server import start_server
from sow_qwen3_tools.tiny_model import is_random_weight_checkpoint

MODEL_REPOSITORY = REPO / "model_repository"

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
MODES = ("off", "on")
BANNER = """
######################################################################
#  RANDOM WEIGHTS: the checkpoint was made by make_tiny_model.py.    #
#  THESE NUMBERS MEAN NOTHING: they only show that the pipeline      #
#  runs. Measure with the real Qwen3-ForcedAligner weights           #
#  (scripts/download_model.py).                                      #
######################################################################
(checkpoint: {path})
"""


class UsageError(Exception):
    """Nothing to compare: the message says why (exit status 2)."""


@dataclass(frozen=True)
class Song:
    """One song of the folder: its audio, reference LRC and the lyrics to send."""

    stem: str
    audio: Path
    reference: Path
    lyrics: str
    seconds: float


@dataclass
class SongResult:
    """One song in one mode: the comparison with its reference (None when the alignment failed)."""

    song: Song
    report: EvalReport | None = None
    flagged: int = 0
    realigned: int = 0  # lines whose times came from a re-alignment pass (pass 2 or later)
    seconds: float = 0.0
    error: str = ""


@dataclass
class ModeResult:
    mode: str
    label: str  # how the mode was served, for the table's heading
    songs: list[SongResult] = field(default_factory=list)


def find_songs(folder: Path) -> list[Song]:
    """The songs of ``folder``, by stem: every LRC with an audio file of the same stem that decodes.

    A reference that holds no timed line, or has no audio or audio that does
    not decode, is skipped with a message. Raises UsageError naming the folder
    when no song is left.
    """
    songs = []
    for reference in sorted(folder.glob("*.lrc")):
        audio = next((path for suffix in AUDIO_SUFFIXES if (path := reference.with_suffix(suffix)).is_file()), None)
        if audio is None:
            print(f"eval_quality: {reference.name} has no audio file of the same stem; skipped", file=sys.stderr)
            continue
        try:
            timed = read_timing(reference).lines
            seconds = load_audio(audio, MAX_AUDIO_SECONDS_CEILING, name=str(audio)).size / SAMPLE_RATE
        except BadInputError as exc:  # no timed line; not audio, or longer than any server may allow
            print(f"eval_quality: {exc}; skipped", file=sys.stderr)
            continue
        written = reference.with_suffix(".txt")
        lyrics = (written.read_text(encoding="utf-8-sig") if written.is_file()
                  else "\n".join(line.text for line in timed) + "\n")
        songs.append(Song(reference.stem, audio, reference, lyrics, seconds))
    if not songs:
        raise UsageError(f"{folder} holds no song (an audio file and a .lrc with the same stem)")
    return songs


def align_all(client: Client, songs: list[Song], language: str, out_dir: Path, result: ModeResult) -> None:
    """Align every song with ``client``; write each JSON into ``out_dir`` and compare it with its reference."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for song in songs:
        outcome = SongResult(song)
        started = time.perf_counter()
        try:
            aligned = client.align(song.audio, song.lyrics, language=language, format="json")
            seconds = time.perf_counter() - started
            path = out_dir / f"{song.stem}.json"
            path.write_text(to_json(aligned.json_data), encoding="utf-8")
            outcome.report = evaluate(read_timing(path), read_timing(song.reference))
        except AlignError as exc:  # the server refused or failed, or no line pairs with the reference
            outcome.error = str(exc)
        else:
            outcome.seconds, outcome.flagged = seconds, aligned.quality.flagged_lines
            outcome.realigned = sum(1 for line in aligned.lines if (line.line_pass or 1) > 1)
            if outcome.report.note:
                print(f"eval_quality: {result.mode} {song.stem}: {outcome.report.note}", file=sys.stderr)
        print(f"eval_quality: {result.mode} {song.stem}: "
              + (f"failed: {outcome.error}" if outcome.error else f"{outcome.seconds:.1f} s"), file=sys.stderr)
        result.songs.append(outcome)


def server_environment(mode: str, songs: list[Song]) -> dict[str, str]:
    """The settings of our own server for ``mode``: re-alignment off (0 passes) or config.pbtxt's passes,
    and an audio limit that admits the longest song."""
    configured = float(config_parameter(MODEL_REPOSITORY, "max_audio_seconds"))
    limit = min(MAX_AUDIO_SECONDS_CEILING, max(configured, math.ceil(max(song.seconds for song in songs))))
    passes = "0" if mode == "off" else realign_passes()
    return {"SOW_QWEN3_REALIGN_PASSES": passes, "SOW_QWEN3_MAX_AUDIO_SECONDS": f"{limit:g}"}


def realign_passes() -> str:
    """config.pbtxt's ``realign_passes``, the "on" mode; UsageError when it turns re-alignment off."""
    passes = config_parameter(MODEL_REPOSITORY, "realign_passes")
    if int(passes) < 1:
        raise UsageError(f"config.pbtxt's realign_passes is {passes}: re-alignment is off by default, so there is "
                         "no \"on\" mode to compare; pass --url twice for servers you configured")
    return passes


def run_own_servers(songs: list[Song], options: argparse.Namespace) -> list[ModeResult]:
    """Each mode on its own local server (started, used, stopped in turn)."""
    environments = {mode: server_environment(mode, songs) for mode in MODES}  # both checked before any server starts
    results = []
    for mode, env in environments.items():
        print(f"eval_quality: starting a server on {options.model_dir} with {env}", file=sys.stderr)
        server = start_server(options.model_dir, options.log_dir, env=env)
        try:
            result = ModeResult(mode, f"{mode}: SOW_QWEN3_REALIGN_PASSES={env['SOW_QWEN3_REALIGN_PASSES']}")
            client = Client(url=server.http_url, max_audio_seconds=MAX_AUDIO_SECONDS_CEILING)
            align_all(client, songs, options.language, options.out_dir / mode, result)
            results.append(result)
        finally:
            server.stop()
    return results


def run_given_servers(songs: list[Song], options: argparse.Namespace) -> list[ModeResult]:
    results = []
    for mode, url in zip(MODES, options.url):
        result = ModeResult(mode, f"{mode}: {url}")
        align_all(Client(url=url, max_audio_seconds=MAX_AUDIO_SECONDS_CEILING), songs, options.language,
                  options.out_dir / mode, result)
        results.append(result)
    return results


# ---------------------------------------------------------------- the table

COLUMNS = ("mode", "song", "lines", "mean abs error (s)", "median abs error (s)", "within 0.3 s", "within 1 s",
           "flagged lines", "re-aligned lines", "time (s)")


def row(mode: str, name: str, outcomes: list[SongResult]) -> list[str]:
    """One table row over the paired lines of ``outcomes`` (pooled), by the client's own ``eval`` figures."""
    pooled = EvalReport(tuple(pair for outcome in outcomes for pair in outcome.report.pairs), "").data()
    return [mode, name, str(pooled["lines"]), f"{pooled['mean_abs_error_s']:.3f}",
            f"{pooled['median_abs_error_s']:.3f}", f"{pooled['within_0_3_s']:.1%}", f"{pooled['within_1_0_s']:.1%}",
            str(sum(outcome.flagged for outcome in outcomes)), str(sum(outcome.realigned for outcome in outcomes)),
            f"{sum(outcome.seconds for outcome in outcomes):.1f}"]


def table(results: list[ModeResult]) -> str:
    """The markdown table: per mode, one row per aligned song and one for all of them."""
    rows = []
    for result in results:
        done = [outcome for outcome in result.songs if outcome.report is not None]
        rows += [row(result.mode, outcome.song.stem, [outcome]) for outcome in done]
        if done:
            rows.append(row(result.mode, f"all {len(done)} songs", done))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def report(results: list[ModeResult], random_weights: str | None) -> str:
    """The table with the modes' settings above it and the failures (and the random-weights warning) below."""
    out = ["Modes: " + "; ".join(result.label for result in results), "", table(results)]
    out += [f"FAILED {result.mode} {outcome.song.stem}: {outcome.error}"
            for result in results for outcome in result.songs if outcome.error]
    if random_weights:
        out.append(BANNER.format(path=random_weights))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, metavar="FOLDER", help="songs: audio + reference .lrc (+ lyrics .txt)")
    parser.add_argument("--model-dir", type=Path,
                        default=Path(os.environ.get("SOW_QWEN3_MODEL_PATH", "/models/qwen3-forced-aligner")),
                        help="checkpoint for the two local servers (default $SOW_QWEN3_MODEL_PATH or "
                             "/models/qwen3-forced-aligner)")
    parser.add_argument("--url", action="append", metavar="URL",
                        help="twice: a running server with re-alignment off, then one with it on "
                             "(instead of starting local servers)")
    parser.add_argument("--language", default="Chinese", help="language hint for every song (default Chinese)")
    parser.add_argument("--out-dir", type=Path, help="where the JSON outputs go (default: a new temporary folder)")
    parser.add_argument("--log-dir", type=Path, help="local servers' logs (default: the output folder)")
    options = parser.parse_args(argv)
    if options.url is not None and len(options.url) != len(MODES):
        parser.error(f"--url must be given {len(MODES)} times (re-alignment off, then on); got {len(options.url)}")
    if not options.folder.is_dir():
        parser.error(f"{options.folder} is not a folder")
    if options.url is None and not options.model_dir.is_dir():
        parser.error(f"no checkpoint at {options.model_dir}: pass --model-dir, set SOW_QWEN3_MODEL_PATH, "
                     "or give --url twice")
    options.out_dir = options.out_dir or Path(tempfile.mkdtemp(prefix="eval-quality-"))
    options.log_dir = options.log_dir or options.out_dir
    options.log_dir.mkdir(parents=True, exist_ok=True)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    random_weights = None
    if options.url is None and is_random_weight_checkpoint(options.model_dir):
        random_weights = str(options.model_dir)
        print(BANNER.format(path=random_weights), file=sys.stderr)
    try:
        songs = find_songs(options.folder)
        results = run_own_servers(songs, options) if options.url is None else run_given_servers(songs, options)
    except UsageError as exc:
        print(f"eval_quality: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(report(results, random_weights))
    print(f"eval_quality: JSON outputs in {options.out_dir}", file=sys.stderr)
    return 1 if any(outcome.error for result in results for outcome in result.songs) else 0


if __name__ == "__main__":
    sys.exit(main())
