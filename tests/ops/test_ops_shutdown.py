"""SIGTERM with requests in flight: they finish, then the server exits.

Triton 2.51 on SIGTERM closes its HTTP listener at once (readiness fails, so a
load balancer stops routing), lets in-flight requests finish, runs the model's
finalize() and exits 0 -- provided clients close their connections. A client
that keeps an idle keep-alive connection open holds the server until
--exit-timeout runs out; it then exits 1 without finalize() and leaves its
/dev/shm region (second test; see docs/operations-findings.md).
"""
from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from ops_helpers import (
    call_http,
    cpu_seconds,
    new_http_client,
    once_http,
    slow_request,
    stub_process,
    wait_for,
    wait_until_busy,
)

from sow_qwen3_tools.local_server import http_status, start_server

pytestmark = pytest.mark.server  # needs the real tritonserver

IN_FLIGHT = 4
FINALIZED = "qwen3_aligner_0_0: unloading"  # model.py's finalize() log line


def _in_flight(server, requests, keep_open: list | None = None):
    """Send ``requests`` at once, each on its own connection.

    Returns the pool, the futures of the outcomes, and a list that holds one
    entry per client whose connection is established (a health call opens the
    connection the request then reuses): once every client is connected, a
    SIGTERM cannot keep any of them out.
    """
    connected: list[int] = []

    def send(request):
        client = new_http_client(server.http_url)
        assert client.is_server_live()
        connected.append(1)
        outcome = call_http(client, *request)
        if keep_open is None:
            client.close()
        else:
            keep_open.append(client)  # an idle keep-alive connection, as pooling HTTP clients leave behind
        return outcome

    pool = ThreadPoolExecutor(max_workers=len(requests))
    return pool, [pool.submit(send, request) for request in requests], connected


def _wait_in_flight(server, stub, cpu, connected, count) -> None:
    wait_for(lambda: len(connected) == count, 30, "every client connected")
    wait_until_busy(stub, cpu)


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(tiny_model_dir, server_logs):
    exit_timeout = 30
    server = start_server(tiny_model_dir, server_logs, serve_args=("--exit-timeout", str(exit_timeout)))
    try:
        requests = [slow_request(seed=20 + i, seconds=299.0) for i in range(IN_FLIGHT)]
        alone = once_http(server.http_url, *requests[0])
        assert alone.kind == "ok" and alone.seconds >= 0.5, alone
        stub = stub_process(server)
        cpu = cpu_seconds(stub)
        pool, futures, connected = _in_flight(server, requests)
        _wait_in_flight(server, stub, cpu, connected, len(requests))
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        wait_for(lambda: http_status(f"http://{server.http_url}/v2/health/ready") != 200, 10,
                 "readiness fails after SIGTERM")
        unready_at = time.monotonic()
        done, not_done = wait(futures, timeout=exit_timeout + 30)
        pool.shutdown(wait=False)
        assert not not_done, "in-flight requests did not finish"
        outcomes = [future.result() for future in futures]
        status = server.process.wait(timeout=exit_timeout + 30)
        exited = time.monotonic()
    finally:
        server.stop()

    assert [o.kind for o in outcomes] == ["ok"] * IN_FLIGHT, outcomes
    assert outcomes[0].lines == alone.lines
    assert all(o.finished_at > signalled for o in outcomes), "some request was not in flight at SIGTERM"
    assert unready_at < max(o.finished_at for o in outcomes), "readiness only failed once the work was done"
    assert status == 0, f"exit status {status}:\n{server.log()[-3000:]}"
    assert FINALIZED in server.log(), "finalize() did not run"
    assert server.leftover_processes == [] and server.leftover_shm == []
    print(f"\n[shutdown] in_flight={IN_FLIGHT} unready_after_s={unready_at - signalled:.2f} "
          f"last_answer_after_s={max(o.finished_at for o in outcomes) - signalled:.2f} "
          f"exit_after_s={exited - signalled:.2f} status={status}")


def test_sigterm_with_idle_keepalive_clients_is_bounded_by_the_exit_timeout(tiny_model_dir, server_logs):
    """A request in flight still gets its answer while idle keep-alive connections hold the server;
    the exit timeout bounds the wait (no hang)."""
    exit_timeout = 10
    server = start_server(tiny_model_dir, server_logs, serve_args=("--exit-timeout", str(exit_timeout)))
    idle = new_http_client(server.http_url)
    kept: list = [idle]
    try:
        assert idle.is_server_live()  # an open, idle keep-alive connection, as pooling HTTP clients keep
        stub = stub_process(server)
        cpu = cpu_seconds(stub)
        pool, futures, connected = _in_flight(server, [slow_request(seed=30, seconds=120.0)], keep_open=kept)
        _wait_in_flight(server, stub, cpu, connected, 1)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        done, not_done = wait(futures, timeout=60)
        pool.shutdown(wait=False)
        assert not not_done, "the in-flight request did not finish"
        outcome = futures[0].result()
        status = server.process.wait(timeout=exit_timeout + 30)  # TimeoutExpired here means: hangs
        exited = time.monotonic()
    finally:
        for client in kept:
            client.close()
        server.stop()

    assert outcome.kind == "ok", outcome
    assert outcome.finished_at - signalled < exit_timeout, "the answer came only when the exit timeout ran out"
    assert exited - signalled < exit_timeout + 15
    print(f"\n[shutdown-keepalive] answer_after_s={outcome.finished_at - signalled:.2f} "
          f"exit_after_s={exited - signalled:.2f} status={status} "
          f"finalize_ran={FINALIZED in server.log()} shm_left={server.leftover_shm}")
