"""The prepared GPU check: the aligner core on a GPU against stock qwen-asr, its speed and its memory, in one report.

    gpu_check.py [--device cuda|cpu] [--quick] [--model-dir DIR] [--output REPORT.md]

Steps, in one process, each written into one markdown report (printed, and
written to ``--output``):
  1. machine: the GPU (name, memory, driver), torch, CUDA, Transformers and qwen-asr;
  2. checkpoints: the tiny informative checkpoint (its times vary, so parity
     means something), then the real-size random-weight checkpoint built on
     the spot (``make_tiny_model --preset real --dtype bfloat16``) or
     ``--model-dir``; ``--quick``: the tiny one alone. Steps 3 and 4 run on
     each, step 5 on the last;
  3. parity: the service's engine with ``encoder_attention=full`` (stock's
     attention on every device but flash-attention) against stock
     ``Qwen3ForcedAligner.align``, same device and dtype: the share of unit
     times (80 ms timestamp classes, after the monotonic repair) that are
     identical, on 60 s and 300 s clips, and how many distinct times there
     were (few distinct times make parity weak evidence);
  4. batch invariance: a mix of clips (the parity clips, a short one, the
     same clip twice) aligned in one batched pass (``align_many``, the
     service's cross-request batching) against each alone: the share of unit
     times identical, and the largest confidence difference;
  5. in-process throughput on 60 s clips, the engine's batched passes
     (windowed attention, as the service runs) and stock qwen-asr batched,
     each at 1, 4, 8, 16 and 32 clips: audio seconds per second, TFLOP/s
     counted as ``forward_profile.component_flops`` counts them (the share
     of the device's own bfloat16 matmul rate, measured first), and peak
     device memory (what the batch budget is sized by).

  6. through Triton, where its binary runs here (nvidia-pytriton installed):
     scripts/serve.py on the last checkpoint, a KIND_GPU instance on CUDA (a
     CPU instance with SOW_QWEN3_BATCHING=on on CPU), and perf_analyzer at
     concurrency 1, 8 and 32 on one 60 s clip, 8 requests per stream:
     audio seconds per second (perf_analyzer's Inferences/Second, which in
     its --request-count mode reads low on runs of a second or two), median
     latency, and the requests per execute() Triton reports. Where it cannot
     run, the report says so.

``--device cpu --quick`` runs every step on small sizes (8 s and 20 s clips,
batches of 1 and 2, concurrency 1 and 4); the test suite runs it that way.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sow_qwen3_contract.tensors import ALIGNER_MODEL, SAMPLE_RATE
from sow_qwen3_server import launcher
from sow_qwen3_tools import REPO
from sow_qwen3_tools.songs import LANGUAGE, Song, song_data

FULL = {"parity_seconds": (60, 300), "clip_seconds": 60, "batches": (1, 4, 8, 16, 32), "repeats": 3,
        "matmul": 8192, "concurrency": (1, 8, 32), "requests_per_stream": 8}
QUICK = {"parity_seconds": (8, 20), "clip_seconds": 8, "batches": (1, 2), "repeats": 1, "matmul": 1024,
         "concurrency": (1, 4), "requests_per_stream": 2}
CHARS_PER_SECOND = 100 / 30  # the bench songs' lyric density (100 characters in 30 s)


@dataclass(frozen=True)
class Parity:
    seconds: int
    units: int
    identical: int  # unit times (start and end) equal to stock's
    distinct: int  # distinct times stock gave
    engine_seconds: float
    stock_seconds: float

    @property
    def share(self) -> float:
        return self.identical / (2 * self.units)


@dataclass(frozen=True)
class Invariance:
    calls: int
    unit_times: int
    identical: int
    max_confidence_difference: float

    @property
    def share(self) -> float:
        return self.identical / self.unit_times


@dataclass(frozen=True)
class Speed:
    what: str
    batch: int
    seconds: float  # median over the repeats, of one call (a batch for stock)
    audio_seconds: float  # audio in that call
    flops: float  # FLOPs of that call
    peak_bytes: int | None  # peak device memory of the call (None on CPU)

    @property
    def audio_per_second(self) -> float:
        return self.audio_seconds / self.seconds

    @property
    def tflops(self) -> float:
        return self.flops / self.seconds / 1e12


class Device:
    """Timing and memory on one torch device: a CUDA device synchronises around each timed call."""

    def __init__(self, name: str) -> None:
        import torch

        self.torch = torch
        self.name = name
        self.cuda = name.startswith("cuda")

    def timed(self, call: Callable[[], object]) -> tuple[float, int | None]:
        """Seconds ``call`` takes, and its peak device memory in bytes (None on CPU)."""
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        call()
        if self.cuda:
            self.torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        return seconds, self.torch.cuda.max_memory_allocated() if self.cuda else None


def song(seconds: int) -> tuple[np.ndarray, list[str]]:
    """The bench's deterministic song of ``seconds`` (looped speech, seeded CJK lyrics), as lines."""
    audio, lyrics = song_data(Song(seconds, max(10, round(seconds * CHARS_PER_SECOND))))
    return audio, lyrics.splitlines()


def forward_flops(engine, audio: np.ndarray, lines: Sequence[str], windowed: bool, head_everywhere: bool,
                  narrowed: bool = False) -> float:
    """One forward pass's FLOPs for ``audio`` and ``lines``, its prompt as the engine builds it
    (``AlignmentEngine.prepare``): the head at every token (``head_everywhere``, as stock) or at the timestamp
    tokens only (as the engine), and with ``narrowed`` the last decoder layer at those tokens only too (as the
    engine's pass of one span, ``sow_aligner.last_layer``)."""
    from sow_qwen3_tools.forward_profile import component_flops, forward_shape

    prepared = engine.prepare(engine.clip_span(audio, list(lines), LANGUAGE))
    mel_frames = len(audio) // engine.aligner.processor.feature_extractor.hop_length
    config = engine.aligner.model.config.thinker_config
    head_rows = prepared.tokens if head_everywhere else 2 * len(prepared.units)
    rows = tuple((prepared.input_ids[0] == engine.aligner.timestamp_token_id).nonzero()[:, 0].tolist())
    shape = forward_shape(config, mel_frames, prepared.tokens, head_rows, windowed, rows if narrowed else None)
    return float(sum(component_flops(config, shape).values()))


def load(model_dir: Path, device: str, dtype: str, encoder_attention: str):
    """The service's engine, loaded as a model instance loads it, with the check's device, dtype and attention."""
    from sow_aligner import settings as sow_settings
    from sow_aligner.engine import AlignmentEngine

    parameters = {**launcher.config_parameters(REPO / "model_repository"), "model_path": str(model_dir),
                  "device": device, "dtype": dtype, "encoder_attention": encoder_attention}
    return AlignmentEngine.load(sow_settings.resolve(parameters, {}))


def stock(model_dir: Path, device: str, dtype: str):
    import torch
    from qwen_asr import Qwen3ForcedAligner

    return Qwen3ForcedAligner.from_pretrained(str(model_dir), dtype=getattr(torch, dtype), device_map=device,
                                              local_files_only=True)


def parity(engine, reference, seconds: int, device: Device) -> Parity:
    audio, lines = song(seconds)
    answer: dict = {}
    engine_seconds, _ = device.timed(lambda: answer.setdefault("engine", engine.align(audio, lines, LANGUAGE)))
    stock_seconds, _ = device.timed(
        lambda: answer.setdefault("stock", reference.align((audio, SAMPLE_RATE), "\n".join(lines), LANGUAGE)[0]))
    ours, theirs = answer["engine"], answer["stock"].items
    if len(ours.unit_start) != len(theirs):
        raise SystemExit(f"gpu_check: the engine timed {len(ours.unit_start)} units, stock {len(theirs)}")
    mine = [round(t, 3) for pair in zip(ours.unit_start, ours.unit_end) for t in pair]
    stock_times = [round(t, 3) for item in theirs for t in (item.start_time, item.end_time)]
    identical = sum(1 for a, b in zip(mine, stock_times) if a == b)
    return Parity(seconds, len(theirs), identical, len(set(stock_times)), engine_seconds, stock_seconds)


def median_call(device: Device, call: Callable[[], object], repeats: int) -> tuple[float, int | None]:
    """The median seconds of ``repeats`` timed calls after one warm-up, and the largest peak memory."""
    call()
    timings = [device.timed(call) for _ in range(repeats)]
    peaks = [peak for _, peak in timings if peak is not None]
    return statistics.median(seconds for seconds, _ in timings), max(peaks) if peaks else None


def unlimited():
    from sow_aligner.batching import BatchBudget

    return BatchBudget(audio_seconds=1e9, tokens=10**12)


def invariance(engine, sizes: dict) -> Invariance:
    """A mix of calls in one batched pass against each alone (see step 4)."""
    lengths = [*sizes["parity_seconds"], sizes["clip_seconds"] // 2, sizes["parity_seconds"][0]]
    calls = [(audio, lines, LANGUAGE) for audio, lines in map(song, lengths)]
    alone = [engine.align(*call) for call in calls]
    together = engine.align_many([engine.clip_span(*call) for call in calls], unlimited())
    pairs = [(a, b) for single, batched in zip(alone, together)
             for a, b in zip([*single.unit_start, *single.unit_end], [*batched.unit_start, *batched.unit_end])]
    confidence = max(abs(a - b) for single, batched in zip(alone, together)
                     for a, b in zip(single.evidence.unit_confidence, batched.evidence.unit_confidence))
    return Invariance(len(calls), len(pairs), sum(1 for a, b in pairs if a == b), confidence)


def engine_speed(engine, device: Device, sizes: dict, batch: int) -> Speed:
    """The engine's batched forward pass over ``batch`` equal clips (``align_many``, as the service batches)."""
    audio, lines = song(sizes["clip_seconds"])
    calls = [(audio, lines, LANGUAGE)] * batch
    # The spans are made in every call: each call encodes its songs again, as the service does for each request.
    seconds, peak = median_call(device, lambda: engine.align_many([engine.clip_span(*call) for call in calls],
                                                                  unlimited()), sizes["repeats"])
    flops = batch * forward_flops(engine, audio, lines, windowed=True, head_everywhere=False, narrowed=batch == 1)
    return Speed("service engine, batched", batch, seconds, batch * audio.size / SAMPLE_RATE, flops, peak)


def stock_speed(reference, engine, device: Device, sizes: dict, batch: int) -> Speed:
    """Stock ``align`` on ``batch`` equal clips in one call (its batched forward pass)."""
    audio, lines = song(sizes["clip_seconds"])
    text = "\n".join(lines)
    seconds, peak = median_call(
        device, lambda: reference.align([(audio, SAMPLE_RATE)] * batch, [text] * batch, LANGUAGE), sizes["repeats"])
    flops = batch * forward_flops(engine, audio, lines, windowed=False, head_everywhere=True)
    return Speed("stock qwen-asr, batched", batch, seconds, batch * audio.size / SAMPLE_RATE, flops, peak)


def free_device_memory(device: Device) -> None:
    """Give the models' device memory back before the server loads its own copy."""
    import gc

    gc.collect()
    if device.cuda:
        device.torch.cuda.empty_cache()


def matmul_tflops(device: Device, dtype: str, size: int) -> float:
    """The device's rate on an n x n x n matrix product in ``dtype`` (mean of 10 after 3 warm-ups)."""
    torch = device.torch
    a = torch.randn(size, size, device=device.name, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, device=device.name, dtype=getattr(torch, dtype))
    for _ in range(3):
        a @ b
    seconds, _ = device.timed(lambda: [a @ b for _ in range(10)])
    return 10 * 2 * size**3 / seconds / 1e12


@dataclass(frozen=True)
class Served:
    concurrency: int
    audio_per_second: float
    p50_ms: float
    requests_per_execute: float


def through_triton(model_dir: Path, device: Device, dtype: str, sizes: dict, scratch: Path,
                   server_path: str | None = None) -> tuple[list[Served], str]:
    """Step 6: (one row per concurrency level, a note); no rows and the reason where Triton cannot run here."""
    import csv
    import importlib.util

    from sow_qwen3_tools import perf_input
    from sow_qwen3_tools.local_server import start_server

    wrapper = REPO / "scripts" / "perf_analyzer.sh"
    if importlib.util.find_spec("pytriton") is None:
        return [], "not run: no tritonserver binary here (nvidia-pytriton is not installed)"
    probe = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return [], f"not run: no usable perf_analyzer here ({probe.stderr.strip()[-300:]})"
    audio, lines = song(sizes["clip_seconds"])
    data = scratch / "perf-input.json"
    data.write_text(json.dumps(perf_input.input_data(audio, "\n".join(lines), LANGUAGE)))
    env = {"SOW_QWEN3_DTYPE": dtype, "SOW_QWEN3_MAX_QUEUE": str(2 * max(sizes["concurrency"]))}
    env.update({"SOW_QWEN3_INSTANCE_KIND": "gpu"} if device.cuda else {"SOW_QWEN3_BATCHING": "on"})
    if server_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (server_path, os.environ.get("PYTHONPATH"))))
    logs = scratch / "server-logs"
    logs.mkdir(exist_ok=True)
    server = start_server(model_dir, logs, env=env, timeout=600)
    rows = []
    try:
        for concurrency in sizes["concurrency"]:
            before = execution_counts(server.http_url)
            report = scratch / f"perf-{concurrency}.csv"
            run = subprocess.run(
                [str(wrapper), "-m", ALIGNER_MODEL, "-u", server.http_url, "--input-data", str(data),
                 "--concurrency-range", str(concurrency),
                 "--request-count", str(concurrency * sizes["requests_per_stream"]), "-f", str(report)],
                capture_output=True, text=True, timeout=900)
            if run.returncode != 0:
                raise SystemExit(f"gpu_check: perf_analyzer failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
            after = execution_counts(server.http_url)
            (row,) = csv.DictReader(report.open())
            rows.append(Served(concurrency, float(row["Inferences/Second"]) * audio.size / SAMPLE_RATE,
                               float(row["p50 latency"]) / 1000, (after[0] - before[0]) / max(1, after[1] - before[1])))
    finally:
        status = server.stop()
    kind = "a KIND_GPU instance" if device.cuda else "a CPU instance with SOW_QWEN3_BATCHING=on"
    return rows, f"scripts/serve.py with {kind}, dtype {dtype}; exit status {status} after the runs"


def execution_counts(url: str) -> tuple[int, int]:
    """(requests inferred, execute() calls) of the aligner so far, from Triton's statistics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{url}/v2/models/{ALIGNER_MODEL}/stats", timeout=30) as response:
        stats = json.load(response)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def versions() -> str:
    found = []
    for name in ("torch", "transformers", "qwen-asr", "accelerate", "tokenizers", "numpy"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return ", ".join(found)


def machine(device: Device) -> str:
    torch = device.torch
    if device.cuda:
        properties = torch.cuda.get_device_properties(0)
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            driver = "unknown (no nvidia-smi)"
        return (f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, driver {driver}, CUDA "
                f"{torch.version.cuda}; {os.cpu_count()} CPUs; Python {platform.python_version()}; {versions()}")
    from sow_qwen3_tools.bench import machine_facts

    return f"{machine_facts()['machine']}; {versions()}"


def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


@dataclass(frozen=True)
class Evidence:
    """Steps 3 and 4 on one checkpoint."""

    checkpoint: str
    load_seconds: float
    parities: list[Parity]
    batched: Invariance


def evidence_rows(evidence: Evidence) -> list[str]:
    rows = [f"Checkpoint: {evidence.checkpoint}; engine load {evidence.load_seconds:.1f} s.", "",
            "Parity, engine (encoder_attention=full) against stock `align`, same device and dtype:", "",
            "| clip | units | identical unit times | distinct stock times | engine s | stock s |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {p.seconds} s | {p.units} | {p.identical}/{2 * p.units} ({100 * p.share:.1f} %) | {p.distinct} | "
             f"{p.engine_seconds:.3f} | {p.stock_seconds:.3f} |" for p in evidence.parities]
    batched = evidence.batched
    return rows + ["", f"Batch invariance, {batched.calls} calls of mixed lengths in one batched pass against each "
                   f"alone: {batched.identical}/{batched.unit_times} unit times identical ({100 * batched.share:.1f} "
                   f"%), confidences within {batched.max_confidence_difference:.2g}.", ""]


@dataclass
class Report:
    """What the check has found so far; ``render`` writes it whole or in part (a step that failed says so)."""

    facts: str
    dtype: str
    quick: bool
    evidence: list[Evidence] = field(default_factory=list)
    matmul: float | None = None
    speeds: list[Speed] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    served_note: str = "not run yet"
    failures: list[str] = field(default_factory=list)

    def render(self) -> str:
        rate = "not measured" if self.matmul is None else f"{self.matmul:.1f} TFLOP/s"
        rows = [f"### GPU check ({'quick' if self.quick else 'full'}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
                f"- command: `{' '.join(['scripts/gpu_check.py', *sys.argv[1:]])}`",
                f"- machine: {self.facts}",
                f"- dtype {self.dtype}; matrix product rate of this device in it: {rate}", ""]
        for item in self.evidence:
            rows += evidence_rows(item)
        timed = self.evidence[-1].checkpoint.split(";")[0] if self.evidence else "the last checkpoint"
        if self.speeds:
            rows += [f"In-process speed on {timed} (median of the repeats, one warm-up first):", "",
                     "| what | batch | s per call | audio-s/s | TFLOP/s | of the matmul rate | peak memory GiB |",
                     "|---|---|---|---|---|---|---|"]
            rows += [f"| {s.what} | {s.batch} | {s.seconds:.3f} | {s.audio_per_second:.1f} | {s.tflops:.3g} | "
                     f"{'-' if self.matmul is None else f'{100 * s.tflops / self.matmul:.1f} %'} | "
                     f"{gib(s.peak_bytes)} |" for s in self.speeds]
            rows.append("")
        rows += [f"Through Triton and perf_analyzer (one {timed} request per stream at a time): "
                 f"{self.served_note}.", ""]
        if self.served:
            rows += ["audio-s/s is perf_analyzer's Inferences/Second times the clip's length (its --request-count "
                     "mode reads low on runs of a second or two).", "",
                     "| concurrency | audio-s/s | p50 latency ms | requests per execute() |", "|---|---|---|---|"]
            rows += [f"| {row.concurrency} | {row.audio_per_second:.1f} | {row.p50_ms:.0f} | "
                     f"{row.requests_per_execute:.2f} |" for row in self.served]
            rows.append("")
        if self.failures:
            rows += ["Steps that failed:", "", *(f"- {failure}" for failure in self.failures), ""]
        return "\n".join(rows)


def checkpoints(options: argparse.Namespace, scratch: Path) -> list[tuple[Path, str]]:
    """The checkpoints to check and their descriptions: the tiny informative one (parity and invariance mean
    something there: its times vary), then (not ``--quick``) ``--model-dir`` or the real-size random-weight one,
    built now. The last one is also timed."""
    from sow_qwen3_tools.tiny_model import write_checkpoint

    found = [(write_checkpoint(scratch / "tiny", "tiny", "float32"), "tiny informative random-weight checkpoint")]
    if options.model_dir:
        found.append((options.model_dir, str(options.model_dir)))
    elif not options.quick:
        started = time.perf_counter()
        found.append((write_checkpoint(scratch / "real", "real", "bfloat16"),
                      f"real-size untrained random-weight checkpoint (built in {time.perf_counter() - started:.0f} s)"))
    return found


def check_evidence(model_dir: Path, description: str, options: argparse.Namespace, dtype: str, sizes: dict,
                   device: Device):
    """Steps 3 and 4 on one checkpoint: (Evidence, the windowed engine, stock qwen-asr), both loaded."""
    started = time.perf_counter()
    full = load(model_dir, options.device, dtype, "full")
    load_seconds = time.perf_counter() - started
    reference = stock(model_dir, options.device, dtype)
    parities = [parity(full, reference, seconds, device) for seconds in sizes["parity_seconds"]]
    del full
    engine = load(model_dir, options.device, dtype, "windowed")
    return Evidence(description, load_seconds, parities, invariance(engine, sizes)), engine, reference


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--quick", action="store_true", help="small sizes: the tiny checkpoint, short clips")
    parser.add_argument("--dtype", help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--model-dir", type=Path, help="a checkpoint to use instead of building one")
    parser.add_argument("--output", type=Path, help="also write the report here (after every step)")
    parser.add_argument("--server-path", help="folders put first on the Triton server's PYTHONPATH only (the "
                        "numpy<2 the 2.51 Python backend needs, where the machine's own numpy is 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the steps in order; the report is written to ``--output`` after each one, so a check cut off by a
    time limit still leaves what it measured. A step that raises is reported and the steps that do not depend on
    it go on; the exit status is then 1."""
    options = parse_args(argv)
    device = Device(options.device)
    if device.cuda and not device.torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    dtype = options.dtype or ("bfloat16" if device.cuda else "float32")
    sizes = QUICK if options.quick else FULL
    report = Report(machine(device), dtype, options.quick)

    def save() -> None:
        if options.output:
            options.output.parent.mkdir(parents=True, exist_ok=True)
            options.output.write_text(report.render(), encoding="utf-8")

    def step(name: str, call: Callable[..., object], *args: object) -> object | None:
        try:
            return call(*args)
        except Exception as exc:  # the report says which step broke and how; the others still run
            report.failures.append(f"{name}: {type(exc).__name__}: {str(exc)[-1500:]}")
            print(f"gpu_check: {name} failed", file=sys.stderr)
            traceback.print_exc()
            return None
        finally:
            save()
            print(f"gpu_check: {name} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    started = time.perf_counter()
    engine = reference = model_dir = None
    with tempfile.TemporaryDirectory(prefix="sow-qwen3-gpu-check-") as scratch:
        for model_dir, description in checkpoints(options, Path(scratch)):
            found = step(f"parity and batch invariance on {description}", check_evidence, model_dir, description,
                         options, dtype, sizes, device)
            if found is not None:
                evidence, engine, reference = found
                report.evidence.append(evidence)
        report.matmul = step("matrix product rate", matmul_tflops, device, dtype, sizes["matmul"])
        if engine is not None:
            timings = [(f"engine speed, batch {batch}", engine_speed, engine, device, sizes, batch)
                       for batch in sizes["batches"]]
            timings += [(f"stock speed, batch {batch}", stock_speed, reference, engine, device, sizes, batch)
                        for batch in sizes["batches"]]
            for name, call, *args in timings:
                speed = step(name, call, *args)
                if speed is not None:
                    report.speeds.append(speed)
        del engine, reference
        free_device_memory(device)
        served = step("through Triton", through_triton, model_dir, device, dtype, sizes, Path(scratch),
                      options.server_path)
        if served is not None:
            report.served, report.served_note = served
        else:
            report.served_note = "failed (below)"
        save()
    print(report.render())
    return 1 if report.failures else 0
