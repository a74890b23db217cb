"""The Python backend stub killed (SIGKILL, as the kernel's OOM killer would) during a request.

What Triton 2.51 does (measured, see docs/operations-findings.md): the in-flight
request fails at once with HTTP 500 "Stub process 'qwen3_aligner_0_0' is not
healthy."; the stub is NOT restarted; /v2/health/ready and the model's ready
endpoint stay 200; every later request fails the same way. serve.py's
supervisor (scripts/triton_supervisor.py) turns that into an exit with status 1
within seconds, so a restart policy brings the service back.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from ops_helpers import (
    Outcome, cpu_seconds, deltas, new_http_client, call_http, once_http, scrape, scrape_until, short_request,
    slow_request, stub_process, wait_until_busy,
)
from server_process import start_server

pytestmark = pytest.mark.server  # needs the real tritonserver

HANG_GUARD = 30.0      # seconds: an error must come back well before this (client timeout is 120 s)
RECOVERY_DEADLINE = 20.0  # seconds after the kill to either answer correctly again or stop being ready


@dataclass
class Crash:
    server: object
    in_flight: Outcome
    seconds_after_kill: float
    reference: Outcome
    failures_delta: dict


@pytest.fixture(scope="module")
def crash(tiny_model_dir, server_logs):
    """A server whose stub was SIGKILLed while it executed a request; the request's outcome."""
    # A short exit timeout: after a crash 2.51 cannot unload the model and waits all of it.
    server = start_server(tiny_model_dir, server_logs, serve_args=("--exit-timeout", "5"))
    try:
        reference = once_http(server.http_url, *short_request())
        assert reference.kind == "ok", reference
        before = scrape(server.metrics_url)
        stub = stub_process(server)
        cpu = cpu_seconds(stub)
        result: dict[str, Outcome] = {}

        def in_flight() -> None:
            client = new_http_client(server.http_url)
            try:
                result["outcome"] = call_http(client, *slow_request(seed=7, seconds=299.0))
            finally:
                client.close()

        thread = threading.Thread(target=in_flight, daemon=True)
        thread.start()
        wait_until_busy(stub, cpu)
        os.kill(stub.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        thread.join(HANG_GUARD + 120)
        assert "outcome" in result, "the in-flight request never returned (client timeout did not fire either)"
        outcome = result["outcome"]
        wanted = {"backend_failures": ("nv_inference_request_failure", {"reason": "BACKEND"}),
                  "success": ("nv_inference_request_success", {})}
        after = scrape_until(server.metrics_url, lambda s: deltas(before, s, wanted)["backend_failures"] >= 1)
        yield Crash(server, outcome, outcome.finished_at - killed_at, reference, deltas(before, after, wanted))
    finally:
        server.stop()
        # The supervisor removes the /dev/shm region a crashed server leaves; nothing may keep running.
        assert server.leftover_processes == [], server.leftover_processes
        assert server.leftover_shm == [], f"shared memory left in /dev/shm: {server.leftover_shm}"


def test_in_flight_request_gets_an_error_not_a_hang(crash):
    outcome = crash.in_flight
    assert outcome.kind == "error", outcome
    assert outcome.status == "500" and "Stub process" in outcome.message and "not healthy" in outcome.message, outcome
    assert crash.seconds_after_kill < HANG_GUARD, f"the error came {crash.seconds_after_kill:.1f} s after the kill"
    # Triton counts it as a backend failure, not a success.
    assert crash.failures_delta == {"backend_failures": 1, "success": 0}, crash.failures_delta


def test_server_exits_with_status_1_so_it_is_restarted(crash):
    """Triton alone would stay "ready" and fail every request; the supervisor ends it instead."""
    server = crash.server
    try:
        status = server.process.wait(timeout=RECOVERY_DEADLINE + 10 + 15)  # + exit timeout + kill grace
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server still runs after the stub was killed; ready: {server.is_ready()}")
    assert status == 1, server.log()[-2000:]
    assert "stub" in server.log() and "stopping tritonserver" in server.log()
    assert server.descendant_pids() == []
