#!/usr/bin/env python3
"""Side by side: stock in-process qwen-asr against our Triton service, on one machine, in one run.

    bench.py [--quick] [--songs 30,120,300] [--dtypes bfloat16,float32] [--repeats 3]
             [--concurrency 1,2,4,8] [--requests 8] [--throughput-song 30]
             [--service-dtype bfloat16|float32] [--no-profile] [--stock-cutoff 3]
             [--model-dir DIR] [--output docs/benchmarks.md | --no-write]

Model: the real Qwen3-ForcedAligner-0.6B architecture with random weights and
the tiny tokenizer, built once into DIR (default .cache/bench-real-bf16) by
``make_tiny_model.py --preset real --dtype bfloat16``.

Songs: about 30, 120 and 300 s of 16 kHz audio (assets/amazing_grace_zh.ogg
looped, with light seeded noise) and about 100, 300 and 500 Chinese
characters of lyrics in lines of 8-14 characters (seeded draws from the
tiny tokenizer's corpus characters, so most characters are one token, as
with the real tokenizer).

Per stock dtype (``--dtypes``, both by default), the baseline and the
service run side by side, each in its own process, both loaded for the
whole phase:
  A  stock ``Qwen3ForcedAligner.from_pretrained(DIR, dtype=..., device_map="cpu")``
     then ``.align(audio=(wav, 16000), text=lyrics, language="Chinese")``, in a
     worker subprocess (its own peak RSS; torch's default thread count);
  B  scripts/serve.py (real tritonserver 2.51) in its default configuration
     (config.pbtxt: dtype auto, which times the dtypes at load and takes the
     faster) unless ``--service-dtype`` sets SOW_QWEN3_DTYPE, called over HTTP
     and over gRPC with tritonclient; its load time (process start to ready)
     is recorded.
The headline compares B with stock at its best: for each song, the faster of
the stock dtypes, against B's HTTP time in that same phase. The float32 phase
runs first; a stock dtype that is more than ``--stock-cutoff`` times slower
than the other on a song (bfloat16 where the CPU emulates it: 10-20x) is not
run on the longer songs, and the report says so: it cannot be the best there.
Each process's first call is a warm-up (10 s clip) and not counted. Songs
run from short to long, and each repeat calls A, HTTP and gRPC in a rotating
order, so drift on a shared machine hits all three alike. Peak RSS is VmHWM:
the peak over the process's life so far, so each song's figure covers it and
every shorter song. Then throughput: ``--requests`` requests of one song,
HTTP, at each ``--concurrency`` level, against as many sequential in-process
calls; it runs in the phase whose stock dtype is the service's.

Then (unless ``--no-single-pass``), in the phase whose stock dtype is the
service's, the same songs over HTTP through a second server in the
single-pass configuration (``window_seconds`` 400, ``realign_passes`` 0: one
forward pass per song, as stock does), so that the engine's speed and the
cost of the default's windows and re-alignment are told apart; the report
shows how many model passes, over how much audio, each configuration paid
(from the server's log line of each request) and why.

Then (unless ``--no-profile``) the per-component profile: the service's
engine in-process with config.pbtxt's defaults, one call per song after a
warm-up, timed per component by forward hooks (scripts/forward_profile.py),
with FLOP counts and achieved GFLOP/s next to the dtype probe's rate at
1024 rows (``sow_aligner.dtype_probe.measure_gflops``) in the chosen dtype.

Full run (the defaults): about an hour on 2 cores; the 300 s song is measured once per dtype
(LONG_SONG_REPEATS). ``--quick``: 30 s song,
both stock dtypes, one repeat, concurrency 1 and 2 with 2 requests (about 5 minutes).
The report (markdown) is printed and written into its run mode's section of
docs/benchmarks.md (quick, full, or custom for any other selection); the
section is rewritten after every case, so an interrupted run leaves what
finished, and text outside the sections is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from sow_qwen3.client import request_inputs
from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_server import launcher
from sow_qwen3_tools.forward_profile import COMPONENTS, achieved
from sow_qwen3_tools.songs import LANGUAGE, SONGS, WARM_UP, Song, song_data

from . import REPO

DEFAULT_MODEL_DIR = REPO / ".cache" / "bench-real-bf16"
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
MODEL = "qwen3_aligner"
WORKER = "_in_process_worker"  # argv[1] that makes this script the baseline worker
ENGINE_WORKER = "_engine_worker"  # argv[1] that makes this script the per-component profiler
MATMUL_ROWS = 1024  # rows of the probe pass the bench reports as the machine's matmul rate
MODES = ("in-process", "http", "grpc")
# One forward pass per song: the longest window the timestamp head allows, no re-alignment.
SINGLE_PASS = {"SOW_QWEN3_WINDOW_SECONDS": "400", "SOW_QWEN3_REALIGN_PASSES": "0"}
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
# Repeats cap for songs of 300 s or more, per stock dtype (1.5-10 minutes a call in the slower one).
LONG_SONG_REPEATS = {"float32": 1, "bfloat16": 1}
GB = 1e9  # reports use decimal gigabytes


# ---------------------------------------------------------------- processes

def config_parameters(model: str = launcher.MODEL_NAME) -> dict[str, str]:
    """The config.pbtxt parameters of ``model`` (the service's defaults; qwen3_aligner unless named), key -> value."""
    return launcher.config_parameters(REPO / "model_repository", model)


def peak_rss_kb(pid: int) -> int:
    """VmHWM of ``pid`` in kB: its peak resident set over its life so far (0 if gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else 0


def worker_main(model_dir: str, dtype: str) -> None:
    """The in-process baseline: stock qwen-asr, driven by JSON lines on stdin.

    Requests: {"op": "align"|"tokens", "song": KEY} (KEY from SONGS, or "warm-up").
    Replies, one JSON line each on the original stdout: first the load info
    {"threads", "load_seconds", "versions"}, then per align {"seconds",
    "units", "peak_kb"}, per tokens {"tokens"}. Anything libraries print goes
    to stderr, so it cannot corrupt the replies.
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from qwen_asr import Qwen3ForcedAligner

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")

    started = time.perf_counter()
    aligner = Qwen3ForcedAligner.from_pretrained(model_dir, dtype=getattr(torch, dtype), device_map="cpu")
    reply({
        "threads": torch.get_num_threads(),
        "load_seconds": time.perf_counter() - started,
        "versions": {name: metadata.version(name) for name in ("torch", "transformers", "qwen-asr")},
    })
    songs = {"warm-up": WARM_UP, **SONGS}
    data: dict[str, tuple[np.ndarray, str]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = request["song"]
        if key not in data:
            data[key] = song_data(songs[key])
        audio, lyrics = data[key]
        if request["op"] == "tokens":
            _, prompt = aligner.aligner_processor.encode_timestamp(lyrics, LANGUAGE)
            ids = aligner.processor(text=[prompt], audio=[audio], return_tensors="pt", padding=True)["input_ids"]
            reply({"tokens": int(ids.shape[1])})
            continue
        started = time.perf_counter()
        result = aligner.align(audio=(audio, SAMPLE_RATE), text=lyrics, language=LANGUAGE)
        reply({"seconds": time.perf_counter() - started, "units": len(result[0].items),
               "peak_kb": peak_rss_kb(os.getpid())})


def load_engine(model_dir: str | Path):
    """The service's engine in this process, as one model instance loads it (config.pbtxt's settings, the
    SOW_QWEN3_* variables over them, the instance's torch threads): (engine, settings, load seconds)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from sow_aligner import settings as sow_settings
    from sow_aligner.engine import AlignmentEngine

    settings = sow_settings.resolve({**config_parameters(), "model_path": str(model_dir)}, os.environ)
    torch.set_num_threads(sow_settings.torch_threads_for(settings, 1))
    started = time.perf_counter()
    engine = AlignmentEngine.load(settings)
    return engine, settings, time.perf_counter() - started


def engine_worker_main(model_dir: str) -> None:
    """The service's engine in-process (config.pbtxt defaults), timed per component.

    Protocol as ``worker_main``: first {"load_seconds", "dtype", "choice",
    "threads", "matmul_gflops"}, then per {"op": "profile", "song": KEY}
    {"seconds", "components": {name: s}, "flops": {name: n}}.
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import torch

    engine, settings, load_seconds = load_engine(model_dir)
    from sow_aligner.dtype_probe import ProbeShapes, measure_gflops
    from sow_qwen3_tools.forward_profile import ComponentTimer, component_flops, forward_shape

    dtype = engine.dtype_choice.dtype
    shapes = ProbeShapes.from_config(json.loads((Path(model_dir) / "config.json").read_text()))
    replies.write(json.dumps({
        "load_seconds": load_seconds, "dtype": dtype, "choice": engine.dtype_choice.describe(),
        "threads": torch.get_num_threads(), "matmul_gflops": measure_gflops(dtype, shapes, 5.0, rows=MATMUL_ROWS),
    }) + "\n")
    thinker = engine.aligner.model.thinker
    timer = ComponentTimer(thinker)
    songs = {"warm-up": WARM_UP, **SONGS}
    for line in sys.stdin:
        audio, lyrics = song_data(songs[json.loads(line)["song"]])
        lines = lyrics.splitlines()
        timer.seconds = dict.fromkeys(timer.seconds, 0.0)
        with timer.timing():
            started = time.perf_counter()
            result = engine.align(audio, lines, LANGUAGE)
            seconds = time.perf_counter() - started
        shape = forward_shape(thinker.config, timer.inputs["mel_frames"], timer.inputs["tokens"],
                              head_rows=2 * len(result.unit_text), windowed=settings.encoder_attention == "windowed",
                              last_layer_rows=timer.last_layer_rows)
        replies.write(json.dumps({"seconds": seconds, "components": timer.components(),
                                  "flops": component_flops(thinker.config, shape)}) + "\n")


class InProcess:
    """Parent side of a worker subprocess (``worker_main``, or ``engine_worker_main`` with ENGINE_WORKER)."""

    def __init__(self, model_dir: Path, dtype: str | None, allocator: str, worker: str = WORKER) -> None:
        """The worker runs on ``allocator``'s malloc (``launcher.ALLOCATORS``), as the service would."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, worker, str(model_dir), *([dtype] if dtype else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
            env=launcher.with_allocator(dict(os.environ), allocator),
        )
        self.info = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"in-process worker exited with status {self.process.wait()}")
        return json.loads(line)

    def call(self, op: str, song: str) -> dict:
        self.process.stdin.write(json.dumps({"op": op, "song": song}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        """End the worker (EOF on stdin; SIGKILL to our own child after 60 s)."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def check_lines(result, lyrics: str) -> None:
    """Raise unless the response times every lyric line."""
    got = result.as_numpy("LINE_TEXT").shape[-1]
    want = len(lyrics.splitlines())
    if got != want:
        raise RuntimeError(f"service answered {got} lines for {want}")


class Service:
    """Our tritonserver (started by server_process.start_server) with one HTTP and one gRPC client."""

    def __init__(self, model_dir: Path, dtype: str | None, log_dir: Path, instance_count: int | None = None,
                 env: dict[str, str] | None = None, timeout_s: float = 900) -> None:
        """Start the server; ``dtype`` None keeps config.pbtxt's (auto); ``env`` adds SOW_QWEN3_* settings;
        ``timeout_s`` bounds each HTTP request. ``load_seconds``: start to ready."""
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient

        from sow_qwen3_tools.local_server import start_server

        self.modules = {"http": httpclient, "grpc": grpcclient}
        serve_args = ("--instance-count", str(instance_count)) if instance_count else ()
        started = time.perf_counter()
        settings = {**(env or {}), **({"SOW_QWEN3_DTYPE": dtype} if dtype else {})}
        # An empty inductor cache: the decoder compiles at load as in a fresh container (SOW_QWEN3_COMPILE).
        inductor_cache = tempfile.mkdtemp(prefix="inductor-", dir=log_dir)
        self.server = start_server(model_dir, log_dir, env={**settings, "TORCHINDUCTOR_CACHE_DIR": inductor_cache},
                                   serve_args=serve_args)
        self.load_seconds = time.perf_counter() - started
        self.timeout_s = timeout_s
        self.clients = {
            "http": httpclient.InferenceServerClient(self.server.http_url, connection_timeout=timeout_s,
                                                     network_timeout=timeout_s),
            "grpc": grpcclient.InferenceServerClient(self.server.grpc_url),
        }

    def align(self, protocol: str, audio: np.ndarray, lyrics: str, tag: str) -> float:
        """Wall seconds of one request over ``protocol``, tensors built inside the timing."""
        started = time.perf_counter()
        inputs = request_inputs(self.modules[protocol], audio, lyrics, LANGUAGE)
        result = self.clients[protocol].infer(MODEL, inputs, request_id=tag)
        seconds = time.perf_counter() - started
        check_lines(result, lyrics)
        return seconds

    def concurrent(self, audio: np.ndarray, lyrics: str, concurrency: int, requests: int, tag: str) -> float:
        """Wall seconds for ``requests`` HTTP requests with at most ``concurrency`` in flight."""
        httpclient = self.modules["http"]
        client = httpclient.InferenceServerClient(
            self.server.http_url, concurrency=concurrency, connection_timeout=self.timeout_s,
            network_timeout=self.timeout_s)
        try:
            inputs = request_inputs(httpclient, audio, lyrics, LANGUAGE)
            started = time.perf_counter()
            pending = [client.async_infer(MODEL, inputs, request_id=f"{tag}-{i}") for i in range(requests)]
            results = [request.get_result() for request in pending]
            seconds = time.perf_counter() - started
        finally:
            client.close()
        for result in results:
            check_lines(result, lyrics)
        return seconds

    def peaks_kb(self) -> tuple[int, int]:
        """(VmHWM summed over the backend stubs, VmHWM of tritonserver itself), in kB."""
        return sum(peak_rss_kb(pid) for pid in self.server.stub_pids()), peak_rss_kb(self.server.process.pid)

    def version(self) -> str:
        return self.clients["http"].get_server_metadata()["version"]

    def dtype(self) -> str:
        """The dtype the model loaded in, from its log."""
        match = re.search(r"loaded .* on \S+ as (\w+) ", self.server.log())
        return match.group(1) if match else "?"

    def dtype_choice(self) -> str:
        """The model's log line on how it chose its dtype (the probe's figures with dtype=auto)."""
        match = re.search(r"(dtype \w+ \(.*?)\"?$", self.server.log(), re.M)
        return match.group(1).strip() if match else "?"

    def torch_threads(self) -> str:
        match = re.search(r"torch threads (\d+)", self.server.log())
        return match.group(1) if match else "?"

    def passes(self, request_id: str) -> str:
        """The model's passes for ``request_id`` as its log line says ("N model passes over X s of audio ..."),
        "" if not logged."""
        match = re.search(rf"request {re.escape(request_id)}: (\d+ model passes over .*? lines re-aligned)",
                          self.server.log())
        return match.group(1) if match else ""

    def model_seconds(self, request_id: str) -> float | None:
        """Seconds the model spent on ``request_id``, from its log line (None if not logged)."""
        match = re.search(rf"request {re.escape(request_id)}: outcome=ok .* ms=(\d+)", self.server.log())
        return int(match.group(1)) / 1000 if match else None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.server.stop()


# ---------------------------------------------------------------- results

@dataclass
class Case:
    """One (dtype, song): wall seconds per mode, model seconds inside the server, peaks in kB."""

    dtype: str  # stock (A) dtype of the phase
    song: Song
    lines: int
    tokens: int
    service_dtype: str = "?"
    times: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})
    model_http: list[float] = field(default_factory=list)
    passes: str = ""  # the default service's model passes for this song (its log line of the first HTTP request)
    single_pass_http: list[float] = field(default_factory=list)  # HTTP seconds in the single-pass configuration
    single_pass_passes: str = ""
    in_process_peak_kb: int = 0
    stub_peak_kb: int = 0
    server_peak_kb: int = 0

    def median(self, mode: str) -> float:
        return statistics.median(self.times[mode])


@dataclass
class Throughput:
    """``requests`` requests of one song: sequential in-process call times, service wall per concurrency."""

    dtype: str
    song: Song
    requests: int
    sequential: list[float] = field(default_factory=list)
    levels: dict[int, float] = field(default_factory=dict)

    def sequential_rate(self) -> float:
        return self.song.seconds * len(self.sequential) / sum(self.sequential)

    def rate(self, concurrency: int) -> float:
        return self.song.seconds * self.requests / self.levels[concurrency]


@dataclass
class Profile:
    """One in-process engine call: wall seconds, seconds and FLOPs per forward component."""

    song: Song
    seconds: float
    components: dict[str, float]
    flops: dict[str, int]


@dataclass
class Run:
    mode: str
    command: str
    options: argparse.Namespace
    started: datetime
    facts: dict[str, str] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    service_loads: list[tuple[str, float]] = field(default_factory=list)  # (dtype, start-to-ready seconds)
    engine: dict = field(default_factory=dict)  # the profiler's load reply
    profiles: list[Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    finished: datetime | None = None


# ---------------------------------------------------------------- measuring

def repeats_for(song: Song, dtype: str, repeats: int) -> int:
    return min(repeats, LONG_SONG_REPEATS.get(dtype, repeats)) if song.seconds >= 300 else repeats


def measure_dtype(run: Run, dtype: str, publish: Callable[[], None]) -> None:
    """All cases and the throughput of one dtype; results are appended to ``run`` as they come."""
    options = run.options
    log(f"{dtype}: starting the in-process worker and the server")
    baseline = InProcess(options.model_dir, dtype, options.stock_allocator)
    service = None
    try:
        service = Service(options.model_dir, options.service_dtype, options.log_dir, options.instance_count)
        service_dtype = service.dtype()
        run.service_loads.append((service_dtype, service.load_seconds))
        run.facts[f"service in the {dtype} phase"] = (
            f"loaded as {service_dtype} in {service.load_seconds:.1f} s from process start to ready "
            f"({service.dtype_choice()})")
        pytriton = metadata.version("nvidia-pytriton")
        run.facts["Triton"] = f"Triton Inference Server {service.version()} (nvidia-pytriton {pytriton})"
        run.facts["versions"] = ", ".join(f"{k} {v}" for k, v in baseline.info["versions"].items())
        run.facts[f"threads {dtype}"] = (
            f"in-process torch threads {baseline.info['threads']} (torch default), "
            f"server torch threads {service.torch_threads()} per instance "
            f"({threads_setting()})")
        warm_audio, warm_lyrics = song_data(WARM_UP)
        baseline.call("align", "warm-up")
        service.align("http", warm_audio, warm_lyrics, f"{dtype}-warm-up")
        for key in options.songs:
            run.cases.append(measure_case(baseline, service, dtype, SONGS[key], options.repeats))
            run.cases[-1].service_dtype = service_dtype
            publish()
            slower = stock_slowdown(run, key, dtype)
            if slower is not None and slower > options.stock_cutoff and key != options.songs[-1]:
                run.notes.append(
                    f"stock {dtype} was {slower:.1f}x slower than the other stock dtype on the {key} s song "
                    f"(cutoff {options.stock_cutoff:g}x): not run on the longer songs, where it cannot be the best")
                log(run.notes[-1])
                break
        if options.concurrency and service_dtype == dtype:
            run.throughput.append(Throughput(dtype, SONGS[options.throughput_song], options.requests))
            measure_throughput(baseline, service, run.throughput[-1], options.concurrency, publish)
    finally:
        baseline.close()
        if service is not None:
            service.close()
            record_model_times([case for case in run.cases if case.dtype == dtype], service)
    if service is not None and not options.no_single_pass and service_dtype == dtype:
        measure_single_pass(run, [case for case in run.cases if case.dtype == dtype], publish)


def measure_single_pass(run: Run, cases: list[Case], publish: Callable[[], None]) -> None:
    """The cases' songs over HTTP through a server in the single-pass configuration (SINGLE_PASS), as many
    times as the default service ran each."""
    options = run.options
    log("single-pass: starting a server with " + ", ".join(f"{k}={v}" for k, v in SINGLE_PASS.items()))
    service = Service(options.model_dir, options.service_dtype, options.log_dir, options.instance_count,
                      env=SINGLE_PASS)
    try:
        warm_audio, warm_lyrics = song_data(WARM_UP)
        service.align("http", warm_audio, warm_lyrics, "single-pass-warm-up")
        for case in cases:
            audio, lyrics = song_data(case.song)
            for repeat in range(len(case.times["http"])):
                case.single_pass_http.append(service.align("http", audio, lyrics, single_pass_id(case, repeat)))
                log(f"single-pass {case.song.seconds} s repeat {repeat + 1}: {case.single_pass_http[-1]:.2f} s")
            publish()
    finally:
        service.close()
        for case in cases:
            case.single_pass_passes = service.passes(single_pass_id(case, 0))


def single_pass_id(case: Case, repeat: int) -> str:
    return f"{request_id(case, 'http', repeat)}-single-pass"


def stock_slowdown(run: Run, key: str, dtype: str) -> float | None:
    """Stock ``dtype``'s median time on song ``key`` over the other stock dtype's (None before both ran)."""
    mine = [c for c in run.cases if c.song.key == key and c.dtype == dtype and c.times["in-process"]]
    other = [c for c in run.cases if c.song.key == key and c.dtype != dtype and c.times["in-process"]]
    if not mine or not other:
        return None
    return mine[0].median("in-process") / other[0].median("in-process")


def record_model_times(cases: list[Case], service: Service) -> None:
    """Fill each case's ``model_http`` from the (stopped, so fully flushed) server's log."""
    for case in cases:
        logged = (service.model_seconds(request_id(case, "http", r)) for r in range(len(case.times["http"])))
        case.model_http = [seconds for seconds in logged if seconds is not None]
        case.passes = service.passes(request_id(case, "http", 0))


def request_id(case: Case, protocol: str, repeat: int) -> str:
    return f"{case.dtype}-{case.song.key}-{protocol}-{repeat}"


def measure_case(baseline: InProcess, service: Service, dtype: str, song: Song, repeats: int) -> Case:
    """Median-ready wall times of A, HTTP and gRPC for one song, in a rotating order per repeat."""
    audio, lyrics = song_data(song)
    case = Case(dtype, song, lines=len(lyrics.splitlines()), tokens=baseline.call("tokens", song.key)["tokens"])
    for repeat in range(repeats_for(song, dtype, repeats)):
        for mode in MODES[repeat % 3:] + MODES[:repeat % 3]:
            if mode == "in-process":
                reply = baseline.call("align", song.key)
                if reply["units"] != song.chars:
                    raise RuntimeError(f"in-process aligned {reply['units']} units for {song.chars} characters")
                seconds = reply["seconds"]
                case.in_process_peak_kb = max(case.in_process_peak_kb, reply["peak_kb"])
            else:
                seconds = service.align(mode, audio, lyrics, request_id(case, mode, repeat))
            case.times[mode].append(seconds)
            log(f"{dtype} {song.seconds} s repeat {repeat + 1} {mode}: {seconds:.2f} s")
    case.stub_peak_kb, case.server_peak_kb = service.peaks_kb()
    return case


def measure_throughput(baseline: InProcess, service: Service, result: Throughput, levels: list[int],
                       publish: Callable[[], None]) -> None:
    """Sequential in-process calls, then the service at each concurrency level."""
    audio, lyrics = song_data(result.song)
    for _ in range(result.requests):
        result.sequential.append(baseline.call("align", result.song.key)["seconds"])
    log(f"{result.dtype} sequential in-process: {result.sequential_rate():.2f} audio-s/s")
    for level in levels:
        tag = f"{result.dtype}-throughput-c{level}"
        result.levels[level] = service.concurrent(audio, lyrics, level, result.requests, tag)
        log(f"{result.dtype} concurrency {level}: {result.rate(level):.2f} audio-s/s")
        publish()


def measure_profile(run: Run, publish: Callable[[], None]) -> None:
    """The service's engine in-process, one call per song after a warm-up, timed per component."""
    log("profile: loading the engine in-process with config.pbtxt's defaults")
    worker = InProcess(run.options.model_dir, None, run.options.service_allocator, ENGINE_WORKER)
    try:
        run.engine = worker.info
        worker.call("profile", "warm-up")
        for key in run.options.songs:
            reply = worker.call("profile", key)
            run.profiles.append(Profile(SONGS[key], reply["seconds"], reply["components"], reply["flops"]))
            log(f"profile {key} s: {reply['seconds']:.2f} s")
            publish()
    finally:
        worker.close()


# ---------------------------------------------------------------- report

@dataclass(frozen=True)
class Target:
    name: str
    verdict: str  # PASS, FAIL or "not measured"
    detail: str


def best_stock(run: Run, key: str) -> Case | None:
    """Of the song's cases, the one whose stock (in-process) median is fastest."""
    cases = [c for c in run.cases if c.song.key == key and c.times["in-process"] and c.times["http"]]
    return min(cases, key=lambda c: c.median("in-process")) if cases else None


def service_ratio(case: Case) -> float:
    return case.median("http") / case.median("in-process")


def single_pass_ratio(case: Case) -> float:
    return statistics.median(case.single_pass_http) / case.median("in-process")


def forward_fraction(run: Run) -> tuple[Profile, float] | None:
    """The longest profiled song and its forward pass's GFLOP/s as a fraction of the matmul rate."""
    if not run.profiles or not run.engine:
        return None
    longest = max(run.profiles, key=lambda p: p.song.seconds)
    return longest, achieved(longest.flops, longest.components)["forward"] / run.engine["matmul_gflops"]


def targets(run: Run) -> list[Target]:
    """The speed targets (issue 20's, and the memory and throughput ones before them), judged on this run's
    numbers."""
    def judge(name: str, value: float | None, limit: float, detail: str, at_most: bool = True) -> Target:
        if value is None:
            return Target(name, "not measured", "")
        ok = value <= limit if at_most else value >= limit
        return Target(name, "PASS" if ok else "FAIL", detail)

    verdicts = []
    for key in ("120", "300"):
        best = best_stock(run, key)
        verdicts.append(judge(
            f"{key} s song, concurrency 1: service default / best stock <= 0.60",
            service_ratio(best) if best else None, 0.60,
            f"{service_ratio(best):.3f} (service, {best.service_dtype}: {best.median('http'):.2f} s / stock "
            f"{best.dtype}: {best.median('in-process'):.2f} s)" if best else ""))
    fraction = forward_fraction(run)
    verdicts.append(judge(
        "whole forward pass >= 75% of the matmul rate in the chosen dtype", fraction[1] if fraction else None, 0.75,
        f"{fraction[1] * 100:.0f}% ({achieved(fraction[0].flops, fraction[0].components)['forward']:.1f} of "
        f"{run.engine['matmul_gflops']:.1f} GFLOP/s, {run.engine['dtype']}, {fraction[0].song.seconds} s song)"
        if fraction else "", at_most=False))
    loads = [seconds for _, seconds in run.service_loads]
    verdicts.append(judge("load time (process start to ready, probe included) <= 30 s",
                          max(loads) if loads else None, 30.0,
                          ", ".join(f"{seconds:.1f} s ({dtype})" for dtype, seconds in run.service_loads)))
    long_bf16 = [c for c in run.cases if c.song.key == "300" and c.service_dtype == "bfloat16"]
    verdicts.append(judge("300 s song, service in bfloat16: serving process (stub) peak RSS <= 4 GB",
                          max(c.stub_peak_kb for c in long_bf16) * 1024 / GB if long_bf16 else None, 4.0,
                          f"{max(c.stub_peak_kb for c in long_bf16) * 1024 / GB:.2f} GB" if long_bf16 else ""))
    long_f32 = [c for c in run.cases if c.song.key == "300" and c.service_dtype == "float32"]
    total = max(c.stub_peak_kb + c.server_peak_kb for c in long_f32) * 1024 / GB if long_f32 else None
    verdicts.append(judge("300 s song, service in float32: stub + tritonserver peak RSS <= 8 GB (container limit)",
                          total, 8.0, f"{total:.2f} GB" if total is not None else ""))
    tp = next((t for t in run.throughput if 4 in t.levels and t.sequential), None)
    verdicts.append(judge("throughput at concurrency 4 >= sequential in-process (same dtype)",
                          tp.rate(4) / tp.sequential_rate() if tp else None, 1.0,
                          f"{tp.rate(4):.2f} vs {tp.sequential_rate():.2f} audio-s/s "
                          f"({tp.rate(4) / tp.sequential_rate():.2f}x, {tp.dtype}, {tp.song.seconds} s song)"
                          if tp else "", at_most=False))
    return verdicts


def seconds_cell(values: list[float]) -> str:
    """Median, with the range when there are several values."""
    if not values:
        return "–"
    median = statistics.median(values)
    return f"{median:.2f}" if len(values) == 1 else f"{median:.2f} ({min(values):.2f}–{max(values):.2f})"


def gb(kb: int) -> str:
    return f"{kb * 1024 / GB:.2f}"


def case_tables(cases: list[Case]) -> list[str]:
    rows = [
        "| A dtype | B dtype | song | lyrics: chars / lines / tokens | repeats | A in-process (s) | B HTTP (s) "
        "| B gRPC (s) | HTTP / A | gRPC / A | audio-s/s A / HTTP / gRPC | model time in server, HTTP (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        a, h, g = (c.median(mode) for mode in MODES)
        rows.append(
            f"| {c.dtype} | {c.service_dtype} | {c.song.seconds} s | {c.song.chars} / {c.lines} / {c.tokens} "
            f"| {len(c.times['http'])} "
            f"| {seconds_cell(c.times['in-process'])} | {seconds_cell(c.times['http'])} | {seconds_cell(c.times['grpc'])} "
            f"| {h / a:.3f} | {g / a:.3f} "
            f"| {c.song.seconds / a:.1f} / {c.song.seconds / h:.1f} / {c.song.seconds / g:.1f} "
            f"| {seconds_cell(c.model_http)} |")
    rows += [
        "",
        "Peak RSS (VmHWM, GB = 10^9 bytes) after each song; songs run short to long, so each figure is the peak "
        "over that song and every shorter one (and loading).",
        "",
        "| A dtype | B dtype | song | A in-process worker | B Python backend stub | B tritonserver |",
        "|---|---|---|---|---|---|",
    ]
    rows += [f"| {c.dtype} | {c.service_dtype} | {c.song.seconds} s | {gb(c.in_process_peak_kb)} | {gb(c.stub_peak_kb)} "
             f"| {gb(c.server_peak_kb)} |" for c in cases]
    return rows


def best_stock_table(run: Run) -> list[str]:
    """Per song: stock in each dtype, the faster one, and the service (same phase as the faster) against it."""
    dtypes = list(run.options.dtypes)
    rows = ["| song | " + " | ".join(f"stock {d} (s)" for d in dtypes)
            + " | best stock | service default, HTTP (s) | service / best stock | service single-pass, HTTP (s) "
              "| single-pass / best stock |",
            "|---|" + "---|" * len(dtypes) + "---|---|---|---|---|"]
    for key in run.options.songs:
        best = best_stock(run, key)
        if best is None:
            continue
        stock = {c.dtype: c.median("in-process") for c in run.cases if c.song.key == key and c.times["in-process"]}
        cells = " | ".join(f"{stock[d]:.2f}" if d in stock else "–" for d in dtypes)
        single = (f"{statistics.median(best.single_pass_http):.2f} | {single_pass_ratio(best):.3f}"
                  if best.single_pass_http else "– | –")
        rows.append(f"| {key} s | {cells} | {best.dtype} | {best.median('http'):.2f} ({best.service_dtype}) "
                    f"| {service_ratio(best):.3f} | {single} |")
    passes = [(key, best) for key in run.options.songs if (best := best_stock(run, key)) and best.passes]
    if passes:
        rows += ["", "What each configuration paid, per song (the server's log line of the first HTTP request):", ""]
        rows += [f"- {key} s: default: {best.passes}; single-pass: {best.single_pass_passes or 'not run'}"
                 for key, best in passes]
        rows += ["", "The default cuts a song longer than `window_seconds` (180 s) into windows, each moving on by "
                 "at least half a window, and re-aligns doubtful runs between anchors (`realign_passes` 2). With "
                 "random weights the model piles lines at a window's start, so windows move on by the minimum and "
                 "most lines are flagged: a window count near the bound (about 1 + ceil((S - 180) / 90)) and no "
                 "anchors to re-align between are what random weights cost, not what trained weights do. "
                 "`scripts/bench_song.py` times the 300 s song's default with answers at an even pace instead "
                 "(its section, \"Whole songs\"): two windows, and re-alignment with a quarter of the lines "
                 "flagged."]
    return rows


def profile_table(run: Run) -> list[str]:
    """Per song and component: FLOPs, seconds, share, GFLOP/s and its fraction of the matmul rate."""
    rate = run.engine["matmul_gflops"]
    rows = [f"Engine in-process ({run.engine['threads']} torch threads), config.pbtxt defaults: loaded in "
            f"{run.engine['load_seconds']:.1f} s; {run.engine['choice']}. Matmul rate: the dtype probe's pass "
            f"(decoder MLP, encoder FFN, causal attention) at {MATMUL_ROWS} rows in {run.engine['dtype']}: "
            f"**{rate:.1f} GFLOP/s**.",
            "",
            "| song | component | GFLOP | seconds | share of forward | GFLOP/s | of matmul rate |",
            "|---|---|---|---|---|---|---|"]
    for profile in run.profiles:
        rates = achieved(profile.flops, profile.components)
        total = sum(profile.components.values())
        for name in COMPONENTS:
            flops = profile.flops.get(name)
            seconds = profile.components[name]
            rows.append(f"| {profile.song.seconds} s | {name} | {flops / 1e9:.1f} | {seconds:.2f} "
                        f"| {seconds / total * 100:.0f}% | {rates[name]:.1f} | {rates[name] / rate * 100:.0f}% |"
                        if flops else
                        f"| {profile.song.seconds} s | {name} | – | {seconds:.2f} | {seconds / total * 100:.0f}% | – | – |")
        rows.append(f"| {profile.song.seconds} s | **forward** | {sum(profile.flops.values()) / 1e9:.1f} "
                    f"| {total:.2f} | 100% | {rates['forward']:.1f} | {rates['forward'] / rate * 100:.0f}% |")
    return rows


def throughput_table(results: list[Throughput]) -> list[str]:
    rows = [
        "| dtype | song | requests | mode | wall (s) | audio-s/s | vs sequential in-process |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in results:
        if not t.sequential:
            continue
        base = t.sequential_rate()
        rows.append(f"| {t.dtype} | {t.song.seconds} s | {len(t.sequential)} | in-process, sequential "
                    f"| {sum(t.sequential):.1f} | {base:.2f} | 1.00 |")
        rows += [f"| {t.dtype} | {t.song.seconds} s | {t.requests} | service HTTP, concurrency {level} "
                 f"| {wall:.1f} | {t.rate(level):.2f} | {t.rate(level) / base:.2f} |"
                 for level, wall in t.levels.items()]
    return rows


def threads_setting() -> str:
    value = os.environ.get("SOW_QWEN3_TORCH_THREADS")
    return f"SOW_QWEN3_TORCH_THREADS={value}" if value else "SOW_QWEN3_TORCH_THREADS unset: the instance's CPU share"


def instances_text(instance_count: int | None) -> str:
    if (instance_count or 1) == 1:
        return ("One model instance: the service aligns one request at a time; concurrency only overlaps transfer "
                "and queueing with compute.")
    return (f"{instance_count} model instances, each with its share of the cores: up to {instance_count} "
            "requests are aligned at once.")


def repeats_text(options: argparse.Namespace) -> str:
    caps = [f"{dtype} {key} s: {repeats_for(SONGS[key], dtype, options.repeats)}"
            for dtype in options.dtypes for key in options.songs
            if repeats_for(SONGS[key], dtype, options.repeats) != options.repeats]
    return f"{options.repeats}" + (f" ({', '.join(caps)})" if caps else "")


def render(run: Run) -> str:
    """The run's markdown section (without the section markers)."""
    options = run.options
    title = {"quick": "Quick run", "full": "Full run"}.get(run.mode.split("-")[0], "Custom run")
    if options.instance_count:
        title += f", {options.instance_count} model instances"
    status = (f"finished {run.finished:%H:%M} UTC" if run.finished
              else "**incomplete**: the numbers below are the parts that finished")
    lines = [
        f"## {title}",
        "",
        f"- Command: `{run.command}`",
        f"- Date: {run.started:%Y-%m-%d %H:%M} UTC, {status}",
        *[f"- {name[0].upper() + name[1:]}: {value}" for name, value in run.facts.items()],
        f"- Repeats per song (median reported, range in brackets; the first call of each process is a warm-up): "
        f"{repeats_text(options)}",
        "",
        "### One request at a time",
        "",
        "A = stock in-process qwen-asr; B = our service. Times are wall seconds per call as the caller sees them; "
        "\"model time in server\" is what the model logged for the same HTTP requests.",
        "",
        *(case_tables(run.cases) if run.cases else ["(no case finished)"]),
        "",
    ]
    if run.cases:
        lines += ["### Service default against stock at its best", "",
                  "Stock qwen-asr in each dtype; the service in its default configuration (or `--service-dtype`), "
                  "HTTP, from the same phase as the faster stock dtype.", "", *best_stock_table(run), ""]
    if run.profiles:
        lines += ["### Where the forward pass's time goes", "", *profile_table(run), ""]
    if run.throughput:
        lines += [
            f"### Throughput (HTTP, {options.requests} requests of the {options.throughput_song} s song per level)",
            "",
            instances_text(options.instance_count),
            "",
            *throughput_table(run.throughput),
            "",
        ]
    lines += ["### Targets", ""]
    lines += [f"- **{t.verdict}** {t.name}" + (f": {t.detail}" if t.detail else "") for t in targets(run)]
    lines += ([""] + [f"- Note: {note}" for note in run.notes]) if run.notes else []
    return "\n".join(lines) + "\n"


DOC_HEADER = """# Benchmarks

Measured with `scripts/bench.py` on the real Qwen3-ForcedAligner-0.6B architecture with random
weights and a tiny tokenizer (built once by `scripts/make_tiny_model.py --preset real --dtype
bfloat16`): the cost of a forward pass does not depend on the weights' values. Baseline A is stock
in-process `qwen-asr` (`Qwen3ForcedAligner.from_pretrained(...)` then `.align(...)`, as its README
shows); B is this project's Triton service over HTTP and gRPC. Each section below is rewritten by
the run mode it names; every section states its exact command, machine and versions.

Times on shared 2-core machines vary by up to 50% from run to run (other jobs share the cores):
compare ratios within one run, not absolute times across runs. Each repeat calls A, HTTP and gRPC
in a rotating order so that drift hits all three alike; ranges are shown beside medians.

Reproduce:

- quick (about 5 minutes): `.venv/bin/python scripts/bench.py --quick`
- full (about an hour on 2 cores): `.venv/bin/python scripts/bench.py`
- parts: `.venv/bin/python scripts/bench.py --songs 120 --dtypes bfloat16 --repeats 3`
- load testing with perf_analyzer: `scripts/perf_analyzer.sh` (see the README's Performance section)
"""

KERNELS_POINTER = """
The two kernels behind the service's speed-up are timed on their own by `scripts/bench_kernels.py`
(`fix_timestamp`: qwen-asr's O(n²) loop against ours; the audio encoder with full against windowed
attention). It prints its tables: `.venv/bin/python scripts/bench_kernels.py --model-dir
.cache/bench-real-bf16` (add `--quick` for a run of under a minute).
"""


def write_report(path: Path, mode: str, section: str) -> None:
    """Put ``section`` between this mode's markers in ``path``; leave everything else as it is.

    A missing file starts with DOC_HEADER (and the bench_kernels.py pointer when
    that script exists); a mode without a section yet gets one at the end.
    Text outside the markers (hand-written notes) is never touched.
    """
    block = f"<!-- bench.py:{mode} -->\n{section}<!-- /bench.py:{mode} -->\n"
    if path.exists():
        text = path.read_text()
    else:
        text = DOC_HEADER + (KERNELS_POINTER if (REPO / "scripts" / "bench_kernels.py").exists() else "")
    pattern = re.compile(rf"<!-- bench\.py:{mode} -->\n.*?<!-- /bench\.py:{mode} -->\n", re.S)
    text = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) else text + "\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------- main

def machine_facts() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M).group(1).split())
    memory = int(re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M).group(1))
    present = [flag for flag in FLAGS_OF_INTEREST if flag in flags]
    absent = [flag for flag in FLAGS_OF_INTEREST if flag not in flags]
    return {
        "machine": (f"{model.group(1).strip() if model else platform.processor()}, "
                    f"{len(os.sched_getaffinity(0))} usable cores, {memory * 1024 / GB:.1f} GB RAM, "
                    f"flags {' '.join(present)} (absent: {' '.join(absent) or 'none'}), "
                    f"Python {platform.python_version()}, {platform.system()} {platform.release()}"),
    }


def ensure_model(model_dir: Path) -> None:
    """Build the real-size random-weight checkpoint into ``model_dir`` unless it is there."""
    if (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file():
        return
    building = model_dir.with_name(model_dir.name + ".building")
    log(f"building the real-size random-weight checkpoint in {model_dir} (a minute or two)")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_model.py"), str(building),
                    "--preset", "real", "--dtype", "bfloat16"], check=True)
    building.rename(model_dir)


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def csv(kind: Callable[[str], object]) -> Callable[[str], list]:
    return lambda text: [kind(item) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="30 s song, both stock dtypes, 1 repeat, concurrency 1,2 with 2 requests (about 5 minutes)")
    parser.add_argument("--songs", type=csv(str), help=f"song lengths in seconds, from {','.join(SONGS)}")
    parser.add_argument("--dtypes", type=csv(str), help="float32,bfloat16 (default both, in this order)")
    parser.add_argument("--repeats", type=int, help="timed calls per song and mode (default 3)")
    parser.add_argument("--concurrency", type=csv(int), help="throughput levels (default 1,2,4,8)")
    parser.add_argument("--requests", type=int, help="requests per throughput level (default 8)")
    parser.add_argument("--throughput-song", default="30", choices=sorted(SONGS, key=int))
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"real-size checkpoint, built here when missing (default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--instance-count", type=int,
                        help="model instances in the server (default: config.pbtxt's; each gets its CPU share)")
    parser.add_argument("--log-dir", type=Path, default=REPO / ".cache" / "bench-logs", help="server logs")
    parser.add_argument("--service-dtype", choices=("bfloat16", "float32"),
                        help="run the service in this dtype (default: config.pbtxt's auto, chosen by the probe)")
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process per-component profile")
    parser.add_argument("--no-single-pass", action="store_true",
                        help="skip the second server in the single-pass configuration")
    parser.add_argument("--stock-allocator", choices=launcher.ALLOCATORS, default="system",
                        help="malloc of stock qwen-asr: system (glibc's, as qwen-asr runs; default) or auto (the "
                             "service's: tcmalloc where installed)")
    parser.add_argument("--stock-cutoff", type=float, default=3.0,
                        help="skip a stock dtype on longer songs once it is this many times slower than the other")
    args = parser.parse_args(argv)
    quick = {"songs": ["30"], "dtypes": ["float32", "bfloat16"], "repeats": 1, "concurrency": [1, 2], "requests": 2}
    full = {"songs": list(SONGS), "dtypes": ["float32", "bfloat16"], "repeats": 3, "concurrency": [1, 2, 4, 8],
            "requests": 8}
    chosen = {name: getattr(args, name) for name in full}
    defaults = quick if args.quick else full
    for name, value in defaults.items():
        if chosen[name] is None:
            setattr(args, name, value)
    args.mode = "quick" if args.quick and not any(chosen.values()) else (
        "full" if not args.quick and not any(chosen.values()) else "custom")
    if (args.no_profile or args.no_single_pass) and args.mode != "custom":
        args.mode = "custom"
    if args.service_dtype:  # its own section, as for the instance count
        args.mode += f"-service-{args.service_dtype}"
    if args.instance_count:  # its own section: it does not replace the default configuration's numbers
        args.mode += f"-{args.instance_count}-instances"
    unknown = [s for s in args.songs if s not in SONGS] + [d for d in args.dtypes if d not in ("bfloat16", "float32")]
    if (unknown or args.repeats < 1 or args.requests < 1 or any(level < 1 for level in args.concurrency)
            or (args.instance_count is not None and args.instance_count < 1)):
        parser.error(f"bad selection {unknown or ''}: songs from {','.join(SONGS)}, dtypes bfloat16,float32, "
                     "repeats, requests, concurrency levels and instance count >= 1")
    args.songs = sorted(args.songs, key=int)
    # The service's malloc, as scripts/serve.py chooses it; the engine's profile runs on it too.
    args.service_allocator = launcher.configured_allocator(os.environ)
    if args.stock_allocator != "system":  # its own section: it does not replace stock as users run it
        args.mode += "-stock-allocator-auto"
    return args


def malloc_text(allocator: str) -> str:
    """Which malloc ``allocator`` gives a process here."""
    library = launcher.allocator_preload(allocator)
    return f"tcmalloc ({library}, {launcher.ALLOCATOR_ENV}={allocator})" if library else f"glibc's ({allocator})"


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (reports carry no machine's absolute paths)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def command_line(argv: list[str], script: str = "scripts/bench.py") -> str:
    """The command that ran ``script`` with ``argv``, as a report shows it (no machine's absolute paths)."""
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python.name
    return shlex.join([str(shown), script, *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER]:
        worker_main(*argv[1:])
        return 0
    if argv[:1] == [ENGINE_WORKER]:
        engine_worker_main(*argv[1:])
        return 0
    options = parse_args(argv)
    options.log_dir.mkdir(parents=True, exist_ok=True)
    ensure_model(options.model_dir)
    run = Run(options.mode, command_line(argv), options, datetime.now(UTC), facts=machine_facts())
    run.facts["model"] = (f"real-size architecture, random weights, tiny tokenizer ({shown_path(options.model_dir)}); "
                          "server: encoder attention windowed (config.pbtxt default); A: stock (full attention on CPU)")
    run.facts["malloc"] = (f"service and its engine profile: {malloc_text(options.service_allocator)}; "
                           f"stock: {malloc_text(options.stock_allocator)}")
    run.notes.append(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")

    def publish() -> None:
        if not options.no_write:
            write_report(options.output, run.mode, render(run))

    for dtype in options.dtypes:
        try:
            measure_dtype(run, dtype, publish)
        except Exception as exc:  # record what failed, keep what finished, go on with the next dtype
            run.notes.append(f"{dtype} stopped early: {type(exc).__name__}: {exc}")
            log(run.notes[-1])
        publish()
    if not options.no_profile:
        try:
            measure_profile(run, publish)
        except Exception as exc:  # keep the comparison's numbers
            run.notes.append(f"profile stopped early: {type(exc).__name__}: {exc}")
            log(run.notes[-1])
        publish()
    run.notes.append(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    run.finished = datetime.now(UTC)
    publish()
    print(render(run))
    for target in targets(run):
        print(f"{target.verdict}: {target.name}" + (f": {target.detail}" if target.detail else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
