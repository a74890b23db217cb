#!/usr/bin/env python3
"""A long song through the built image under compose's limits: does it fit, and what does the container peak at?

    bench_container.py [--seconds 900] [--model-dir DIR] [--memory 8g] [--cpus N]
                       [--output docs/benchmarks.md | --no-write]

Builds the Dockerfile as the image tests do (tests/deploy/docker_stack.py:
the host's CPU torch wheel, the stand-in base image where Docker Hub is
unreachable), starts docker-compose.yml with the real-size random-weight
checkpoint mounted read-only, SOW_QWEN3_MAX_AUDIO_SECONDS raised to the
song's length and everything else at its default (dtype ``auto``: the
model measures its dtype under the container's memory limit), and aligns
bench.py's song of ``--seconds`` (speech looped, 500 Chinese characters per
300 s) once, with the installed ``sow-qwen3`` CLI through the proxy.

Reported: the dtype the model chose, the alignment's wall time, the
container's memory peak by its cgroup (``memory.max_usage_in_bytes`` on
cgroup v1, ``memory.peak`` on v2: resident memory and page cache together,
so an upper bound of what the limit is compared with), its resident and
cache memory at the end, the peak resident size (VmHWM) of each process,
and whether the kernel's OOM killer struck or the container restarted.
Needs a Docker engine with Compose v2 (``shared/tools/docker-up.sh`` here);
takes about as long as the alignment plus a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import soundfile as sf

from sow_qwen3_tools.bench import (
    DEFAULT_MODEL_DIR,
    DEFAULT_OUTPUT,
    GB,
    SAMPLE_RATE,
    command_line,
    ensure_model,
    log,
    machine_facts,
    shown_path,
    write_report,
)
from sow_qwen3_tools.docker_stack import Compose, build_image, docker, engine_problem  # the image tests' own builder
from sow_qwen3_tools.local_server import free_ports
from sow_qwen3_tools.songs import Song, song_data

CLI = Path(sys.executable).parent / "sow-qwen3"
CONTAINER_UID = 10001  # the image's user, who must be able to read the mounted checkpoint


@dataclass(frozen=True)
class ContainerRun:
    """One song aligned by a fresh compose stack."""

    song: Song
    dtype: str  # the model's log line on its dtype
    seconds: float  # the client's wall time
    lines: int  # lines in the client's JSON
    limit_bytes: int
    peak_bytes: int  # the cgroup's memory peak (resident + page cache)
    load_peak_bytes: int  # the same, once the model was ready and before the song
    rss_bytes: int
    cache_bytes: int
    process_hwm_kb: dict[str, int]  # process name -> VmHWM (kB), the largest of that name first
    oom_killed: bool
    restarts: int


def cgroup_memory(container: str) -> dict[str, int]:
    """The container's memory figures by its cgroup, v1 or v2: limit, peak, rss, cache (bytes)."""
    def read(path: str) -> str:
        return docker("exec", container, "cat", path, check=False).stdout

    if stat := read("/sys/fs/cgroup/memory/memory.stat"):  # v1
        fields = dict(line.split() for line in stat.splitlines())
        return {"limit": int(read("/sys/fs/cgroup/memory/memory.limit_in_bytes")),
                "peak": int(read("/sys/fs/cgroup/memory/memory.max_usage_in_bytes")),
                "rss": int(fields["total_rss"]), "cache": int(fields["total_cache"])}
    fields = dict(line.split() for line in read("/sys/fs/cgroup/memory.stat").splitlines())
    return {"limit": int(read("/sys/fs/cgroup/memory.max")), "peak": int(read("/sys/fs/cgroup/memory.peak")),
            "rss": int(fields["anon"]), "cache": int(fields["file"])}


def process_peaks(container: str) -> dict[str, int]:
    """VmHWM (kB) of every process in ``container`` that has one, by name (several of a name: numbered)."""
    script = 'for p in /proc/[0-9]*; do echo "$(cat $p/comm) $(grep VmHWM $p/status)"; done'
    peaks: dict[str, int] = {}
    for line in docker("exec", container, "sh", "-c", script).stdout.splitlines():
        match = re.match(r"(.+?) VmHWM:\s+(\d+) kB", line)
        if match:
            name = match[1] if match[1] not in peaks else f"{match[1]} ({sum(n.startswith(match[1]) for n in peaks) + 1})"
            peaks[name] = int(match[2])
    return dict(sorted(peaks.items(), key=lambda item: -item[1]))


def unreadable_files(model_dir: Path) -> list[str]:
    """``model_dir`` itself and its files where the image's user (not the owner, not in its group) cannot read them."""
    folder = [str(model_dir)] if model_dir.stat().st_mode & 0o005 != 0o005 else []
    return folder + [path.name for path in model_dir.iterdir() if path.is_file() and not path.stat().st_mode & 0o004]


def run_song(model_dir: Path, song: Song, memory: str, cpus: int, work: Path) -> ContainerRun:
    """Build, start the stack, align ``song`` through the proxy, read the container's figures, tear down."""
    audio, lyrics = song_data(song)
    audio_path, lyrics_path, answer_path = work / "song.wav", work / "song.txt", work / "song.json"
    sf.write(audio_path, audio, SAMPLE_RATE, subtype="FLOAT")
    lyrics_path.write_text(lyrics + "\n", encoding="utf-8")
    started = time.perf_counter()
    tag, size = build_image()
    log(f"image {tag}: {size:.2f} GB, built in {time.perf_counter() - started:.0f} s")
    http, grpc, metrics = free_ports(3)
    compose = Compose({
        "SOW_QWEN3_IMAGE": tag, "SOW_QWEN3_API_KEY": "disabled", "SOW_QWEN3_MODEL_HOST_PATH": str(model_dir.resolve()),
        "SOW_QWEN3_MAX_AUDIO_SECONDS": str(song.seconds), "SOW_QWEN3_MEMORY": memory, "SOW_QWEN3_CPUS": str(cpus),
        "SOW_QWEN3_HTTP_PORT": str(http), "SOW_QWEN3_GRPC_PORT": str(grpc), "SOW_QWEN3_METRICS_PORT": str(metrics),
    })
    try:
        up = compose.run("up", "--detach", "--no-build", "--wait", "--wait-timeout", "600", timeout=700, check=False)
        if up.returncode != 0:
            raise RuntimeError(f"compose up failed:\n{up.stderr[-2000:]}\n{compose.logs('aligner')[-3000:]}")
        aligner = compose.container("aligner")
        load_peak = cgroup_memory(aligner)["peak"]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SOW_QWEN3_")},
               "SOW_QWEN3_MAX_AUDIO_SECONDS": str(song.seconds), "SOW_QWEN3_TIMEOUT": str(4 * 3600)}
        started = time.perf_counter()
        done = subprocess.run([str(CLI), "align", str(audio_path), str(lyrics_path), "--url", f"http://127.0.0.1:{http}",
                               "--format", "json", "--output", str(answer_path)], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"sow-qwen3 align exited {done.returncode} after {seconds:.0f} s: {done.stderr[-2000:]}")
        figures = cgroup_memory(aligner)
        peaks = process_peaks(aligner)
        state = compose.inspect("aligner")
        dtype = re.search(r"dtype \w+ \([^)]*\)", compose.logs("aligner"))
        return ContainerRun(song, dtype[0] if dtype else "(not logged)", seconds,
                            len(json.loads(answer_path.read_text())["lines"]), figures["limit"], figures["peak"],
                            load_peak, figures["rss"], figures["cache"], peaks, state["State"]["OOMKilled"],
                            state["RestartCount"])
    finally:
        compose.down()


def render(command: str, started: datetime, facts: dict[str, str], run: ContainerRun | None, note: str) -> str:
    lines = [
        "## A long song in the container, under its limits",
        "",
        f"- Command: `{command}` (`scripts/bench_container.py --help` says what it measures)",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        *[f"- {name[0].upper() + name[1:]}: {value}" for name, value in facts.items()],
        "",
    ]
    if run:
        gb = lambda count: f"{count / GB:.2f}"  # noqa: E731
        processes = ", ".join(f"{name} {kb * 1024 / GB:.2f}" for name, kb in run.process_hwm_kb.items() if kb > 50_000)
        lines += [
            f"The {run.song.seconds} s song ({run.lines} lines) through the proxy with the installed `sow-qwen3` CLI; "
            f"the model's choice: `{run.dtype}`. GB = 10^9 bytes; the cgroup's peak counts page cache too.",
            "",
            "| alignment (s) | limit | peak once loaded | peak after the song | resident at end | page cache at end "
            "| OOM killed | restarts |",
            "|---|---|---|---|---|---|---|---|",
            f"| {run.seconds:.1f} | {gb(run.limit_bytes)} | {gb(run.load_peak_bytes)} | {gb(run.peak_bytes)} "
            f"| {gb(run.rss_bytes)} | {gb(run.cache_bytes)} | {'yes' if run.oom_killed else 'no'} | {run.restarts} |",
            "",
            f"Peak resident size (VmHWM, GB) of the processes over 50 MB: {processes}.",
        ]
    else:
        lines.append("(not measured)")
    lines += ["", f"- Note: {note}"] if note else []
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=900, help="song length (default 900, the longest allowed)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"checkpoint, built here when missing (default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--memory", default="8g", help="container memory limit, SOW_QWEN3_MEMORY (default 8g)")
    parser.add_argument("--cpus", type=int, default=min(4, len(os.sched_getaffinity(0))),
                        help="container CPU limit, SOW_QWEN3_CPUS (default: 4, or the host's cores if fewer)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    options = parser.parse_args(argv)
    if not 1 <= options.seconds <= 900:
        parser.error("--seconds must lie between 1 and 900 (the service's most)")
    return options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = parse_args(argv)
    if problem := engine_problem():
        print(f"bench_container.py: {problem} (here: bash ../shared/tools/docker-up.sh, then source its env file)",
              file=sys.stderr)
        return 2
    ensure_model(options.model_dir)
    if unreadable := unreadable_files(options.model_dir):
        print(f"bench_container.py: the image's user (uid {CONTAINER_UID}) cannot read {', '.join(unreadable)} in "
              f"{options.model_dir}: chmod o+r them (o+rx for the folder)", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    facts = {**machine_facts(), "model": f"{shown_path(options.model_dir)} (random weights)"}
    run, note = None, f"load average (1 min) at start: {os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="bench-container-") as work:
        try:
            run = run_song(options.model_dir, Song(options.seconds, options.seconds * 500 // 300), options.memory,
                           options.cpus, Path(work))
        except Exception as exc:  # recorded in the report; the exit status says it failed
            note += f"; stopped: {type(exc).__name__}: {exc}"
            log(note)
    text = render(command_line(argv, "scripts/bench_container.py"), started, facts, run, note)
    if not options.no_write:
        write_report(options.output, "container", text)
    print(text)
    return 0 if run else 1


if __name__ == "__main__":
    sys.exit(main())
