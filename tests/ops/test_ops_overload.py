"""Overload: past one busy instance and a queue of 2, requests are refused at once, not left to time out;
afterwards the service is back to normal.

Triton 2.51 refuses with HTTP 503 / gRPC UNAVAILABLE and the message
"Exceeds maximum queue size" (see docs/operations-findings.md).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import tritonclient.grpc as grpcclient
from ops_helpers import (
    QUEUE_FULL,
    call_grpc,
    call_http,
    cpu_seconds,
    deltas,
    new_http_client,
    once_grpc,
    once_http,
    scrape,
    scrape_until,
    short_request,
    slow_request,
    stub_process,
    wait_until_busy,
)

from sow_qwen3_tools.local_server import start_server
from support.infer import MODEL

pytestmark = pytest.mark.server  # needs the real tritonserver

QUEUE = 2
BURST = 16          # requests sent at once while the instance is busy
REFUSAL_LIMIT = 3.0  # seconds; the alternative to a fast refusal is waiting minutes in a queue


@pytest.fixture(scope="module")
def small_queue_server(tiny_model_dir, server_logs):
    server = start_server(tiny_model_dir, server_logs, serve_args=("--max-queue-size", str(QUEUE)))
    yield server
    server.stop()
    assert server.leftover_processes == [] and server.leftover_shm == []


def _send(url_http: str, url_grpc: str, index: int, request, barrier: threading.Barrier):
    """Request ``index`` of the burst: HTTP for even indexes, gRPC for odd ones, each on its own connection."""
    if index % 2:
        client, call = grpcclient.InferenceServerClient(url_grpc), call_grpc
    else:
        client, call = new_http_client(url_http), call_http
    try:
        barrier.wait(timeout=30)
        return call(client, *request)
    finally:
        client.close()


def test_overload_is_refused_fast_and_the_service_recovers(small_queue_server):
    server = small_queue_server
    slow = [slow_request(seed=s, seconds=60.0) for s in (1, 2)]
    blocker = slow_request(seed=3, seconds=299.0)
    alone = [once_http(server.http_url, *request) for request in slow]
    short_alone = once_http(server.http_url, *short_request())
    assert all(o.kind == "ok" for o in [*alone, short_alone]), (alone, short_alone)
    before = scrape(server.metrics_url)

    stub = stub_process(server)
    cpu = cpu_seconds(stub)
    barrier = threading.Barrier(BURST)
    with ThreadPoolExecutor(max_workers=BURST + 1) as pool:
        blocking = pool.submit(once_http, server.http_url, *blocker)
        wait_until_busy(stub, cpu)  # the instance is busy: what comes now can only queue
        futures = [pool.submit(_send, server.http_url, server.grpc_url, i, slow[i % 2], barrier) for i in range(BURST)]
        done, not_done = wait([blocking, *futures], timeout=300)
        assert not not_done, f"{len(not_done)} requests still waiting after 300 s: requests hang"
    outcomes = [future.result() for future in futures]

    assert blocking.result().kind == "ok", blocking.result()
    refused = [o for o in outcomes if o.kind == "refused"]
    accepted = [(i, o) for i, o in enumerate(outcomes) if o.kind == "ok"]
    errors = [o for o in outcomes if o.kind == "error"]
    assert not errors, f"requests failed instead of being answered or refused: {errors}"
    # While one batch executes, only QUEUE requests can wait; allow two more batches to free room meanwhile.
    assert len(accepted) <= 3 * QUEUE, f"{len(accepted)} of {BURST} accepted with a queue of {QUEUE}: {outcomes}"
    assert len(refused) >= BURST - 3 * QUEUE
    for outcome in refused:
        assert QUEUE_FULL in outcome.message
        assert outcome.status in ("503", "StatusCode.UNAVAILABLE"), outcome
        assert outcome.seconds < REFUSAL_LIMIT, f"refusal took {outcome.seconds:.2f} s: {outcome}"
    assert {o.status for o in refused} == {"503", "StatusCode.UNAVAILABLE"}, "both protocols should see refusals"
    for index, outcome in accepted:
        assert outcome.lines == alone[index % 2].lines, f"request {index} got another answer than alone"

    # Triton counts only what it executed: the blocker and the accepted ones. (2.51 does not count
    # queue-full refusals anywhere, not even as nv_inference_request_failure{reason="REJECTED"}.)
    wanted = {
        "success": ("nv_inference_request_success", {"model": MODEL}),
        "ok": ("sow_qwen3_alignments_total", {"outcome": "ok"}),
        "failures": ("nv_inference_request_failure", {"model": MODEL, "reason": "REJECTED"}),
        "pending": ("nv_inference_pending_request_count", {"model": MODEL}),
    }
    expected = {"success": 1 + len(accepted), "ok": 1 + len(accepted)}
    after = scrape_until(server.metrics_url, lambda s: {
        k: v for k, v in deltas(before, s, wanted).items() if k in expected} == expected)
    moved = deltas(before, after, wanted)
    assert {k: moved[k] for k in expected} == expected, moved
    assert moved["pending"] == 0, moved

    # Back to normal: ready, and ordinary requests get their usual answer over both protocols.
    assert server.is_ready()
    again = [once_http(server.http_url, *short_request()), once_grpc(server.grpc_url, *short_request())]
    assert [o.lines for o in again] == [short_alone.lines] * 2, again
    print(f"\n[overload] burst={BURST} queue={QUEUE} accepted={len(accepted)} refused={len(refused)} "
          f"refusal_max_s={max(o.seconds for o in refused):.3f} rejected_counted={moved['failures']:g} "
          f"accepted_min_s={min((o.seconds for _, o in accepted), default=float('nan')):.2f}")
