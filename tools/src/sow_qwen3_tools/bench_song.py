#!/usr/bin/env python3
"""What whole songs cost: anchored re-alignment on a 300 s song, and the peak memory of a 900 s song.

    bench_song.py [--quick] [--model-dir DIR] [--flagged-share 0.25] [--run-lines 3]
                  [--log-dir DIR] [--output docs/benchmarks.md | --no-write]

Model: bench.py's real-size random-weight checkpoint (default
.cache/bench-real-bf16, built when missing). Songs: bench.py's (speech
looped, 500 Chinese characters per 300 s in lines of 8-14).

(a) Re-alignment's extra time, in-process. The service's engine
(``bench.load_engine``: config.pbtxt's settings, as one model instance loads
it) in a child process on the service's malloc (tcmalloc where installed;
``SOW_QWEN3_ALLOCATOR`` as scripts/serve.py reads it), voiced segments from
silero_vad's model code with its config.pbtxt's settings, and the service's
request path ``align_request`` (the lyrics split as the service sings them)
run twice on the 300 s song: with ``realign_passes`` 0 (pass 1 alone) and
with config.pbtxt's ``realign_passes``. Random weights
time and flag whatever they happen to (the tiny checkpoint piles every line
into the first seconds of a clip, which leaves no room between anchors to
re-align), so two things are set by hand, and the forward passes still run
for real on exactly the audio the pipeline asks for:

* each call of the engine runs its forward pass, then its units are spread
  evenly over the audio it was given (``spread_evenly``): the song's lines
  get the times of lyrics sung at an even pace, so windows and the rooms
  between anchors are as long as in a correctly timed song;
* the judge is the service's own with its flags replaced: exactly
  ``--flagged-share`` of the lines (runs of ``--run-lines`` lines, spread
  evenly over the song) are flagged ``low_confidence``, in pass 1 and in
  every re-aligned candidate alike. Those lines stay doubtful, so each pass
  re-aligns them again until a pass keeps nothing new (a candidate wins on a
  higher voiced fraction) or the passes run out: an upper bound for a song
  with that share of lines flagged.

Every call of the engine is timed.

(b) Peak memory, served. One server per song (scripts/serve.py,
SOW_QWEN3_MAX_AUDIO_SECONDS=900, everything else config.pbtxt's), one
alignment each: the 300 s song on one, a 900 s song (the same speech looped,
1500 characters) on the other. VmHWM of the Python backend stubs (summed, as
bench.py measures the serving process) and of tritonserver, beside the 8 GB
container limit.

``--quick``: 120 s for (a) and 120 s against 360 s for (b) (360 s is still
aligned in windows), to check the script end to end; on the tiny checkpoint
it takes a few minutes. The report is printed and written into its own
section of docs/benchmarks.md (``song``, or ``song-quick``), rewritten as
each part finishes. A part that fails is recorded as a note and the run goes
on; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sow_qwen3_contract.tensors import SAMPLE_RATE, VAD_MODEL
from sow_qwen3_server import launcher
from sow_qwen3_tools.bench import (
    DEFAULT_MODEL_DIR,
    DEFAULT_OUTPUT,
    GB,
    Service,
    command_line,
    config_parameters,
    ensure_model,
    load_engine,
    log,
    machine_facts,
    malloc_text,
    shown_path,
    write_report,
)
from sow_qwen3_tools.songs import LANGUAGE, SONGS, Song, song_data

if TYPE_CHECKING:
    from sow_aligner.voice_activity import SegmentSettings

CONTAINER_LIMIT_GB = 8.0  # the compose / Kubernetes memory limit a 5-minute song is sized for
LONG_LIMIT = "900"  # SOW_QWEN3_MAX_AUDIO_SECONDS for the memory comparison
MEMORY_TIMEOUT_S = 4 * 3600  # the memory runs measure memory, not latency: random weights may take long
FULL = {"realign_song": SONGS["300"], "memory_songs": (SONGS["300"], Song(900, 1500))}
QUICK = {"realign_song": SONGS["120"], "memory_songs": (SONGS["120"], Song(360, 600))}
REALIGN_WORKER = "_realign_worker"  # argv[1] that makes this module part (a)'s engine process


@dataclass(frozen=True)
class Call:
    """One call of the engine's align: the audio and lines it was given and its wall seconds."""

    audio_seconds: float
    lines: int
    seconds: float


@dataclass
class RealignCost:
    """Part (a): one song aligned with pass 1 alone and with re-alignment, under the fixed-share judge."""

    song: Song
    lines: int
    flagged: list[int]
    passes: int  # config.pbtxt's realign_passes
    window_seconds: float
    dtype: str
    single_seconds: float = 0.0
    realigned_seconds: float = 0.0
    single_calls: list[Call] = field(default_factory=list)
    realigned_calls: list[Call] = field(default_factory=list)
    line_pass: list[int] = field(default_factory=list)
    malloc: str = ""  # the malloc the engine's process ran on (``process_malloc``)

    def repair_calls(self) -> list[Call]:
        """The re-alignment run's calls after its pass 1 (which makes the same calls as the single run)."""
        return self.realigned_calls[len(self.single_calls):]


@dataclass(frozen=True)
class MemoryCase:
    """Part (b): one song served alone by a fresh server."""

    song: Song
    seconds: float
    stub_kb: int
    server_kb: int

    @property
    def total_gb(self) -> float:
        return (self.stub_kb + self.server_kb) * 1024 / GB


# ---------------------------------------------------------------- (a) re-alignment

def flagged_lines(count: int, share: float, run_lines: int) -> list[int]:
    """``round(share * count)`` line indexes in runs of ``run_lines``, the runs spread evenly over the song."""
    wanted = round(share * count)
    runs = math.ceil(wanted / run_lines) if wanted else 0
    chosen: list[int] = []
    for run in range(runs):
        size = min(run_lines, wanted - len(chosen))
        centre = (run + 0.5) * count / runs
        first = min(max(0, round(centre - size / 2)), count - size)
        chosen += [index for index in range(first, first + size) if index not in chosen]
    return sorted(chosen)


def fixed_share_judge(judge, thresholds, flagged: list[int]):
    """The service's ``judge`` with its flags replaced: ``low_confidence`` on exactly the ``flagged`` lines
    (the song's line indexes: the pipeline judges the whole song every time), none on the others."""
    from sow_qwen3_contract.quality import LOW_CONFIDENCE, song_verdict

    chosen = set(flagged)

    def judged(starts, ends, evidence, segments):
        real = judge(starts, ends, evidence, segments, thresholds)
        flags = [[LOW_CONFIDENCE] if index in chosen else [] for index in range(len(starts))]
        voiced = None if segments is None else real.line_voiced
        return replace(real, line_flags=flags, verdict=song_verdict(voiced, flags, thresholds))

    return judged


class TimedSong:
    """An ``EncodedSong`` whose every ``align`` is timed and recorded in ``calls`` (the first one's time includes
    encoding the song), its answer spread evenly (``spread_evenly``)."""

    def __init__(self, song, calls: list[Call]) -> None:
        self.samples, self.grid = song.samples, song.grid
        self._song, self._calls = song, calls

    def align(self, low: int, high: int, lines: list[str], language: str):
        started = time.perf_counter()
        result = self._song.align(low, high, lines, language)
        self._calls.append(Call((high - low) / SAMPLE_RATE, len(lines), time.perf_counter() - started))
        return spread_evenly(result)


def spread_evenly(alignment):
    """``alignment`` (an ``sow_aligner.alignment.Alignment``) with its units spread evenly over its audio:
    unit k of n from k * d / n to (k + 1) * d / n for audio of d seconds; line times follow from the units
    as the engine derives them; the evidence is kept."""
    from sow_aligner.line_timing import line_times

    count, duration = len(alignment.unit_text), alignment.duration
    starts = [round(k * duration / count, 3) for k in range(count)]
    ends = [round((k + 1) * duration / count, 3) for k in range(count)]
    per_line = [alignment.unit_line.count(index) for index in range(len(alignment.lines.starts))]
    return replace(alignment, lines=line_times(per_line, starts, ends, duration), unit_start=starts, unit_end=ends)


def vad_settings() -> SegmentSettings:
    """silero_vad's segmentation settings from its config.pbtxt, read as the model reads them."""
    from sow_aligner.voice_activity import SegmentSettings

    return SegmentSettings.from_parameters(config_parameters(VAD_MODEL))


def voiced_segments(audio: np.ndarray) -> list[tuple[float, float]]:
    """silero_vad's voiced (start, end) seconds, by its model code in-process with its config.pbtxt's settings."""
    from sow_aligner.voice_activity import SileroVad

    result = SileroVad(vad_settings()).run(audio)
    return list(zip(result.segment_start.tolist(), result.segment_end.tolist()))


def measure_realign(model_dir: Path, song: Song, share: float, run_lines: int) -> RealignCost:
    """Part (a): load the engine, align ``song`` with pass 1 alone and with re-alignment, each time through the
    service's request path (``align_request``) with the VAD's segments measured once beforehand."""
    engine, settings, _ = load_engine(model_dir)
    from sow_aligner.evidence import judge
    from sow_aligner.lyrics import sung_lines
    from sow_aligner.request import align_request
    from sow_qwen3_contract.quality import Thresholds

    audio, lyrics = song_data(song)
    lines = sung_lines(lyrics).lines
    segments = voiced_segments(audio)
    cost = RealignCost(song, len(lines), flagged_lines(len(lines), share, run_lines), settings.realign_passes,
                       settings.window_seconds, engine.dtype_choice.dtype, malloc=process_malloc())
    thresholds = Thresholds.from_parameters(config_parameters())
    judged = fixed_share_judge(judge, thresholds, cost.flagged)
    warm_audio, warm_lyrics = song_data(Song(10, 30))
    engine.align(warm_audio, sung_lines(warm_lyrics).lines, LANGUAGE)

    def run(passes: int, calls: list[Call]) -> tuple[float, list[int]]:
        started = time.perf_counter()
        values = align_request(audio.reshape(1, -1), lyrics, LANGUAGE,
                               song_audio=lambda clip: TimedSong(engine.song(clip), calls),  # noqa: F821
                               voice_activity=lambda clip: segments, settings=replace(settings, realign_passes=passes),
                               thresholds=thresholds, judge=judged)
        return time.perf_counter() - started, values.outputs["LINE_PASS"]

    cost.single_seconds, single_pass = run(0, cost.single_calls)
    log(f"(a) pass 1 alone: {cost.single_seconds:.2f} s in {len(cost.single_calls)} calls")
    cost.realigned_seconds, cost.line_pass = run(settings.realign_passes, cost.realigned_calls)
    log(f"(a) with {settings.realign_passes} re-alignment passes: {cost.realigned_seconds:.2f} s "
        f"in {len(cost.realigned_calls)} calls")
    first_pass = [(c.audio_seconds, c.lines) for c in cost.realigned_calls[:len(cost.single_calls)]]
    if set(single_pass) != {1} or first_pass != [(c.audio_seconds, c.lines) for c in cost.single_calls]:
        raise RuntimeError("pass 1 differed between the two runs: the comparison would not hold")
    del engine
    gc.collect()
    return cost


def process_malloc() -> str:
    """The malloc this process runs on: tcmalloc when its library is mapped, else glibc's."""
    maps = Path("/proc/self/maps").read_text()
    return "tcmalloc" if "libtcmalloc" in maps else "glibc's malloc"


def measure_realign_on(allocator: str, model_dir: Path, song: Song, share: float, run_lines: int) -> RealignCost:
    """``measure_realign`` in a child process on ``allocator``'s malloc (``launcher.with_allocator``), as the
    engine runs in the server. Raises RuntimeError naming the child's exit status when it fails (its traceback
    is on stderr)."""
    with tempfile.TemporaryDirectory(prefix="bench-song-realign-") as folder:
        output = Path(folder) / "cost.json"
        done = subprocess.run(
            [sys.executable, "-m", __name__, REALIGN_WORKER, str(model_dir), str(song.seconds), str(song.chars),
             repr(share), str(run_lines), str(output)],
            env=launcher.with_allocator(dict(os.environ), allocator), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"part (a)'s engine process exited with status {done.returncode}")
        return cost_from_json(json.loads(output.read_text()))


def realign_worker(model_dir: str, seconds: str, chars: str, share: str, run_lines: str, output: str) -> None:
    """The child of ``measure_realign_on``: part (a), its RealignCost written to ``output`` as JSON."""
    cost = measure_realign(Path(model_dir), Song(int(seconds), int(chars)), float(share), int(run_lines))
    Path(output).write_text(json.dumps(asdict(cost)))


def cost_from_json(data: dict) -> RealignCost:
    """The RealignCost that ``asdict`` made ``data`` of."""
    calls = {name: [Call(**call) for call in data[name]] for name in ("single_calls", "realigned_calls")}
    return RealignCost(**{**data, "song": Song(**data["song"]), **calls})


# ---------------------------------------------------------------- (b) memory

def measure_memory(model_dir: Path, song: Song, log_dir: Path) -> MemoryCase:
    """Part (b): a fresh server allowing 900 s aligns ``song`` once; its processes' peaks."""
    audio, lyrics = song_data(song)
    service = Service(model_dir, None, log_dir, env={"SOW_QWEN3_MAX_AUDIO_SECONDS": LONG_LIMIT},
                      timeout_s=MEMORY_TIMEOUT_S)
    try:
        seconds = service.align("http", audio, lyrics, f"memory-{song.key}")
        stub_kb, server_kb = service.peaks_kb()
    finally:
        service.close()
    case = MemoryCase(song, seconds, stub_kb, server_kb)
    log(f"(b) {song.seconds} s song: {seconds:.1f} s, peak {case.total_gb:.2f} GB")
    return case


# ---------------------------------------------------------------- report

def realign_section(cost: RealignCost) -> list[str]:
    repairs = cost.repair_calls()
    extra = cost.realigned_seconds - cost.single_seconds
    return [
        f"### Re-alignment on a {cost.song.seconds} s song with {len(cost.flagged)} of {cost.lines} lines flagged",
        "",
        f"The service's engine in-process ({cost.dtype}, on {cost.malloc}), windows of {cost.window_seconds:g} s, "
        f"voiced segments from silero_vad; config.pbtxt's realign_passes = {cost.passes}. Each forward pass runs "
        "for real, then its units are spread evenly over its audio (lyrics sung at an even pace); the judge flags "
        f"exactly lines {', '.join(map(str, cost.flagged))} (runs spread over the song) in pass 1 and in every "
        "re-aligned candidate, so the figure is an upper bound for a song with this share flagged.",
        "",
        "| pass 1 alone (s) | with re-alignment (s) | extra (s) | extra / pass 1 | pass-1 calls "
        "| re-alignment calls | audio re-aligned (s) | their forward time (s) | latest pass kept |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {cost.single_seconds:.2f} | {cost.realigned_seconds:.2f} | {extra:.2f} | {extra / cost.single_seconds:.3f} "
        f"| {len(cost.single_calls)} | {len(repairs)} | {sum(c.audio_seconds for c in repairs):.1f} "
        f"| {sum(c.seconds for c in repairs):.2f} | {max(cost.line_pass)} |",
    ]


def memory_section(cases: list[MemoryCase]) -> list[str]:
    rows = [
        f"### Peak memory of a long song (SOW_QWEN3_MAX_AUDIO_SECONDS={LONG_LIMIT}, one fresh server per song)",
        "",
        "VmHWM (GB = 10^9 bytes) after one alignment: the Python backend stubs summed (qwen3_aligner and "
        "silero_vad) and tritonserver; their sum is an upper bound of the container's peak.",
        "",
        "| song | alignment (s) | backend stubs | tritonserver | total | container limit |",
        "|---|---|---|---|---|---|",
    ]
    rows += [f"| {c.song.seconds} s | {c.seconds:.1f} | {c.stub_kb * 1024 / GB:.2f} | {c.server_kb * 1024 / GB:.2f} "
             f"| {c.total_gb:.2f} | {CONTAINER_LIMIT_GB:g} |" for c in cases]
    if len(cases) == 2 and cases[0].stub_kb and cases[0].server_kb:
        short, long_ = cases
        rows.append(f"| {long_.song.seconds} s / {short.song.seconds} s | {long_.seconds / short.seconds:.2f} "
                    f"| {long_.stub_kb / short.stub_kb:.3f} | {long_.server_kb / short.server_kb:.3f} "
                    f"| {long_.total_gb / short.total_gb:.3f} | |")
    return rows


def render(command: str, started: datetime, facts: dict[str, str], cost: RealignCost | None,
           memory: list[MemoryCase], notes: list[str], quick: bool) -> str:
    lines = [
        f"## Whole songs{' (quick run)' if quick else ''}: re-alignment cost and long-song memory",
        "",
        f"- Command: `{command}` (`scripts/bench_song.py --help` says what it measures)",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        *[f"- {name[0].upper() + name[1:]}: {value}" for name, value in facts.items()],
        "",
        *(realign_section(cost) if cost else ["(re-alignment not measured)"]),
        "",
        *(memory_section(memory) if memory else ["(memory not measured)"]),
    ]
    lines += [""] + [f"- Note: {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="120 s for (a), 120 s against 360 s for (b)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"checkpoint, built here when missing (default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--flagged-share", type=float, default=0.25, help="share of lines flagged (default 0.25)")
    parser.add_argument("--run-lines", type=int, default=3, help="flagged lines per run (default 3)")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    options = parser.parse_args(argv)
    if not 0.0 < options.flagged_share < 1.0 or options.run_lines < 1:
        parser.error("--flagged-share must lie between 0 and 1 (exclusive) and --run-lines be at least 1")
    return options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [REALIGN_WORKER]:
        realign_worker(*argv[1:])
        return 0
    options = parse_args(argv)
    chosen = QUICK if options.quick else FULL
    ensure_model(options.model_dir)
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="bench-song-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    command = command_line(argv, "scripts/bench_song.py")
    allocator = launcher.configured_allocator(os.environ)
    facts = {**machine_facts(), "model": f"{shown_path(options.model_dir)} (random weights)",
             "malloc": f"part (a)'s engine process: {malloc_text(allocator)}; part (b)'s servers: scripts/serve.py's"}
    notes = [f"load average (1 min) at start: {os.getloadavg()[0]:.2f}"]
    cost, memory = None, []

    def publish() -> str:
        text = render(command, started, facts, cost, memory, notes, options.quick)
        if not options.no_write:
            write_report(options.output, "song-quick" if options.quick else "song", text)
        return text

    failed = False
    try:
        cost = measure_realign_on(allocator, options.model_dir, chosen["realign_song"], options.flagged_share,
                                  options.run_lines)
    except Exception as exc:  # record what failed and go on with the memory part
        failed = True
        notes.append(f"re-alignment stopped early: {type(exc).__name__}: {exc}")
        log(notes[-1])
    publish()
    for song in chosen["memory_songs"]:
        try:
            memory.append(measure_memory(options.model_dir, song, log_dir))
        except Exception as exc:  # keep what finished
            failed = True
            notes.append(f"memory of the {song.seconds} s song stopped early: {type(exc).__name__}: {exc}")
            log(notes[-1])
            break
        publish()
    notes.append(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    print(publish())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
