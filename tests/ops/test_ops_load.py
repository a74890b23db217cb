"""Sustained concurrent load: every request answered correctly (or refused explicitly), none lost,
the server stays ready and the stub's memory stays flat.

The default suite runs a short version; the long one is marked ``load``:
    .venv/bin/python -m pytest tests/ops -m load -s
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from ops_helpers import (
    ZH,
    Outcome,
    call_grpc,
    call_http,
    deltas,
    new_http_client,
    once_http,
    percentile,
    scrape,
    scrape_until,
    stub_process,
)

from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_tools.local_server import http_status
from support.audio import SAMPLE_LYRICS, noise, speech
from support.infer import MODEL

pytestmark = pytest.mark.server  # needs the real tritonserver

EN = "Amazing grace how sweet the sound\nThat saved a wretch like me\nI once was lost but now am found"
MIXED = "主啊 Lord，\n\n你是我的力量 my strength\nHallelujah 哈利路亚"
SAMPLE = SAMPLE_LYRICS.read_text(encoding="utf-8")
MEMORY_GROWTH_LIMIT = 0.10  # stub RSS after the run may exceed the post-warm-up RSS by at most 10%


def _speech_cut(start: float, seconds: float) -> np.ndarray:
    clip = speech()
    return clip[int(start * SAMPLE_RATE): int((start + seconds) * SAMPLE_RATE)]


# Real speech (cut at different places) and noise, 2 to 8 seconds, with Chinese,
# English and mixed lyrics, with and without a language.
CORPUS = [
    (_speech_cut(0.0, 6.0), ZH, "Chinese"),
    (_speech_cut(2.5, 3.0), "奇异恩典 何等甘甜\n我罪已得赦免", None),
    (_speech_cut(5.0, 8.0), SAMPLE, "zh"),
    (_speech_cut(9.0, 4.5), "前我失丧 今被寻回\n瞎眼今得看见", "Chinese"),
    (_speech_cut(12.0, 7.0), EN, "English"),
    (_speech_cut(15.5, 5.0), MIXED, None),
    (_speech_cut(1.0, 2.0), "奇异恩典", "zh"),
    (noise(3.5, seed=11), ZH, None),
    (noise(5.5, seed=12), EN, "English"),
    (noise(2.5, seed=13), MIXED, "Chinese"),
    (speech(), SAMPLE, None),
    (_speech_cut(6.0, 3.3), "瞎眼今得看见", "Chinese"),
]


@dataclass
class LoadRun:
    clients: int
    per_client: int
    outcomes: list[tuple[int, int, str, Outcome]] = field(default_factory=list)  # (client, item, protocol, outcome)
    ready_samples: list[int] = field(default_factory=list)
    stub_rss: list[int] = field(default_factory=list)
    duration: float = 0.0


def _client_loop(url_http: str, url_grpc: str, index: int, count: int, run: LoadRun, lock: threading.Lock) -> None:
    """One client: HTTP for even indexes, gRPC for odd ones; a persistent connection; ``count`` requests."""
    protocol = "grpc" if index % 2 else "http"
    client = grpcclient.InferenceServerClient(url_grpc) if protocol == "grpc" else new_http_client(url_http)
    call = call_grpc if protocol == "grpc" else call_http
    try:
        for j in range(count):
            item = (index * 5 + j) % len(CORPUS)
            audio, lyrics, language = CORPUS[item]
            outcome = call(client, audio, lyrics, language)
            with lock:
                run.outcomes.append((index, item, protocol, outcome))
    finally:
        client.close()


def _sampler(server, stub: psutil.Process, run: LoadRun, stop: threading.Event) -> None:
    while not stop.is_set():
        run.ready_samples.append(http_status(f"http://{server.http_url}/v2/health/ready"))
        run.stub_rss.append(stub.memory_info().rss)
        stop.wait(0.25)  # sampling period, not synchronisation


def _run(server, clients: int, per_client: int, deadline: float, sample: bool = True) -> LoadRun:
    run, lock, stop = LoadRun(clients, per_client), threading.Lock(), threading.Event()
    sampler = threading.Thread(target=_sampler, args=(server, stub_process(server), run, stop), daemon=True)
    if sample:
        sampler.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(_client_loop, server.http_url, server.grpc_url, i, per_client, run, lock)
                   for i in range(clients)]
        done, not_done = wait(futures, timeout=deadline)
        run.duration = time.monotonic() - started
        stop.set()
        assert not not_done, f"{len(not_done)} clients still waiting after {deadline} s: requests hang"
    for future in done:
        future.result()  # a client loop that crashed is a test error, not a lost request
    if sample:
        sampler.join(5)
    return run


def _references(url: str) -> list:
    """Each corpus request sent alone, on a fresh connection."""
    answers = []
    for audio, lyrics, language in CORPUS:
        outcome = once_http(url, audio, lyrics, language)
        assert outcome.kind == "ok", outcome
        answers.append(outcome.lines)
    return answers


def check_load(server, clients: int, per_client: int, deadline: float) -> dict:
    """Warm up, run ``clients`` x ``per_client`` requests, check every answer, memory and readiness."""
    reference = _references(server.http_url)
    assert len({tuple(lines.start) for lines in reference}) > len(CORPUS) // 2, "answers barely differ: test is weak"
    _run(server, clients, 3, deadline, sample=False)  # warm-up: every client path, every corpus item
    stub = stub_process(server)
    rss_before = stub.memory_info().rss
    before = scrape(server.metrics_url)

    run = _run(server, clients, per_client, deadline)

    rss_after = stub.memory_info().rss
    total = clients * per_client
    assert len(run.outcomes) == total, f"{total - len(run.outcomes)} requests lost"
    wrong = [(c, item, proto, o) for c, item, proto, o in run.outcomes
             if o.kind == "error" or (o.kind == "ok" and o.lines != reference[item])]
    assert not wrong, f"{len(wrong)} of {total} requests got a wrong answer or an error, e.g. {wrong[:5]}"
    refused = [o for _, _, _, o in run.outcomes if o.kind == "refused"]
    ok = [o for _, _, _, o in run.outcomes if o.kind == "ok"]
    # The queue (32) holds more than the clients (<= 16) can have waiting: nothing should be refused.
    assert not refused, f"{len(refused)} requests refused although the queue can hold every client: {refused[:3]}"
    # The server saw exactly the requests sent: none lost, none counted twice.
    wanted = {"success": ("nv_inference_request_success", {"model": MODEL}),
              "ok": ("sow_qwen3_alignments_total", {"outcome": "ok"})}
    expected = {"success": len(ok), "ok": len(ok)}
    after = scrape_until(server.metrics_url, lambda s: deltas(before, s, wanted) == expected)
    assert deltas(before, after, wanted) == expected
    assert run.ready_samples and set(run.ready_samples) == {200}, f"readiness during the run: {set(run.ready_samples)}"
    assert server.is_ready()
    growth = rss_after / rss_before - 1
    latencies = [o.seconds for o in ok]
    figures = {
        "clients": clients, "requests": total, "ok": len(ok), "refused": len(refused),
        "duration_s": round(run.duration, 1), "throughput_rps": round(total / run.duration, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "stub_rss_mb_after_warmup": round(rss_before / 2**20, 1), "stub_rss_mb_after_run": round(rss_after / 2**20, 1),
        "stub_rss_mb_peak": round(max(run.stub_rss) / 2**20, 1), "stub_rss_growth_pct": round(growth * 100, 2),
        "ready_samples": len(run.ready_samples),
    }
    assert growth <= MEMORY_GROWTH_LIMIT, f"stub RSS grew {growth:.1%} over the run: {figures}"
    return figures


def _report(capsys, name: str, figures: dict) -> None:
    with capsys.disabled():
        print(f"\n[{name}] " + " ".join(f"{key}={value}" for key, value in figures.items()))


def test_short_load_8_clients(triton_server, capsys):
    """8 concurrent clients (HTTP and gRPC) x 60 requests on the shared server."""
    figures = check_load(triton_server, clients=8, per_client=60, deadline=240)
    _report(capsys, "load-short", figures)


@pytest.mark.load
def test_long_load_16_clients(triton_server, capsys):
    """16 concurrent clients x 500 requests (8000, about 5 minutes here), for memory growth and tail latency."""
    figures = check_load(triton_server, clients=16, per_client=500, deadline=900)
    _report(capsys, "load-long", figures)
