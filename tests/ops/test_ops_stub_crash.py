"""The Python backend stub killed (SIGKILL, as the kernel's OOM killer would), and the model brought back in place.

What Triton 2.51 does alone (measured, see docs/operations-findings.md): the
in-flight request fails with HTTP 500 "Stub process 'qwen3_aligner_0_0' is not
healthy."; the stub is NOT restarted; the ready endpoints stay 200 and every
later request fails the same way. serve.py's supervisor
(sow_qwen3_server.supervisor) reloads the model through the repository API
(unload, then load, with the API key), so a fresh stub serves it while the
server keeps running; only when that reload fails does it stop the server with
status 1, so a restart policy brings the service back.

While the model reloads, Triton answers 404 / NOT_FOUND "Request for unknown
model". Requests sent through the ``sow_qwen3`` client during recovery must end
in a correct answer or a retryable ``ServerUnavailableError``, never a hang.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass

import psutil
import pytest
from ops_helpers import (
    Outcome,
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
    wait_for,
    wait_until_busy,
)

from sow_qwen3 import Client, ServerUnavailableError
from sow_qwen3_tools.local_server import http_status, start_server
from support.infer import MODEL

pytestmark = pytest.mark.server  # needs the real tritonserver

KEY = "crash-test-key-7d2a"  # the repository API needs it too: the supervisor must send it
HTTP_KEY, GRPC_KEY = {"api-key": KEY}, {"triton-grpc-protocol-api-key": KEY}
HANG_GUARD = 30.0         # seconds: an error must come back well before this (client timeout is 120 s)
RELOAD_DEADLINE = 240.0   # seconds from the kill to "recovered": the supervisor's 180 s reload bound + detection
PROBE_TIMEOUT = 120.0     # the sow_qwen3 client's timeout for requests sent during recovery
PROBE_PACE = 0.2          # seconds between two probe requests, so they do not starve the reload of CPU
EXIT_DEADLINE = 5 + 15 + 30  # --exit-timeout + the supervisor's kill grace + margin
RECOVERED = f"model {MODEL} recovered"
FINALIZED = "qwen3_aligner_0_0: unloading"  # model.py's finalize() log line


@dataclass
class Probe:
    """One request sent through the sow_qwen3 client while the model was being recovered."""

    protocol: str
    seconds: float
    lines: list | None = None
    error: Exception | None = None
    finished_at: float = 0.0


@dataclass
class Recovery:
    server: object
    in_flight: Outcome
    seconds_after_kill: float
    failures_delta: dict
    reference: list               # the sow_qwen3 client's lines before the kill
    reference_http: Outcome       # the raw HTTP answer before the kill
    triton_pid: int
    killed_stub: int
    probes: list[Probe]
    recovered_at: float


def aligner(server, protocol: str) -> Client:
    url = server.http_url if protocol == "http" else server.grpc_url
    return Client(url, protocol=protocol, api_key=KEY, timeout=PROBE_TIMEOUT)


def align(server, protocol: str) -> list:
    return aligner(server, protocol).align_samples(*short_request(), language="Chinese")


def tritonserver_pid(server) -> int:
    """The tritonserver process under serve.py (its only direct child)."""
    children = psutil.Process(server.process.pid).children()
    assert len(children) == 1, children
    return children[0].pid


def probe_until(server, done: threading.Event, probes: list[Probe]) -> None:
    """Send requests over HTTP and gRPC in turn, one at a time, until ``done`` is set."""
    turn = 0
    while not done.is_set():
        protocol = ("http", "grpc")[turn % 2]
        turn += 1
        started = time.monotonic()
        try:
            probes.append(Probe(protocol, 0.0, lines=align(server, protocol)))
        except Exception as error:  # noqa: BLE001 - every failure is recorded and judged by the tests
            probes.append(Probe(protocol, 0.0, error=error))
        probes[-1].finished_at = time.monotonic()
        probes[-1].seconds = probes[-1].finished_at - started
        done.wait(PROBE_PACE)  # pacing between probes, not synchronisation


@dataclass
class StubKill:
    """A SIGKILL of the aligner's stub while it executed a long request (see kill_the_stub_under_a_request)."""

    stub_pid: int
    killed_at: float  # time.monotonic() right after the kill
    request: threading.Thread
    result: dict[str, Outcome]

    def outcome(self) -> Outcome:
        """The killed request's outcome, once it returns (an error is expected, never a hang)."""
        self.request.join(HANG_GUARD + 120)
        assert "outcome" in self.result, "the in-flight request never returned (client timeout did not fire either)"
        return self.result["outcome"]


def kill_the_stub_under_a_request(server, seed: int) -> StubKill:
    """Send a long request, wait until the aligner's stub works on it, and SIGKILL the stub."""
    stub = stub_process(server)
    cpu = cpu_seconds(stub)
    result: dict[str, Outcome] = {}

    def in_flight() -> None:
        client = new_http_client(server.http_url)
        try:
            result["outcome"] = call_http(client, *slow_request(seed=seed, seconds=299.0), headers=HTTP_KEY)
        finally:
            client.close()

    thread = threading.Thread(target=in_flight, daemon=True)
    thread.start()
    wait_until_busy(stub, cpu)
    os.kill(stub.pid, signal.SIGKILL)
    return StubKill(stub.pid, time.monotonic(), thread, result)


@pytest.fixture(scope="module")
def recovery(tiny_model_dir, server_logs):
    """A server whose stub was SIGKILLed while it executed a request, after the supervisor reported recovery."""
    server = start_server(tiny_model_dir, server_logs, api_key=KEY, serve_args=("--exit-timeout", "5"))
    try:
        reference_http = once_http(server.http_url, *short_request(), headers=HTTP_KEY)
        assert reference_http.kind == "ok", reference_http
        reference = align(server, "http")
        triton_pid = tritonserver_pid(server)
        before = scrape(server.metrics_url)
        probes: list[Probe] = []
        done = threading.Event()
        prober = threading.Thread(target=probe_until, args=(server, done, probes), daemon=True)
        kill = kill_the_stub_under_a_request(server, seed=7)
        prober.start()
        outcome = kill.outcome()
        wanted = {"backend_failures": ("nv_inference_request_failure", {"model": MODEL, "reason": "BACKEND"}),
                  "success": ("nv_inference_request_success", {"model": MODEL})}
        after = scrape_until(server.metrics_url, lambda s: deltas(before, s, wanted)["backend_failures"] >= 1)
        try:
            wait_for(lambda: RECOVERED in server.log() or server.process.poll() is not None, RELOAD_DEADLINE,
                     "the supervisor reports the model recovered")
            assert RECOVERED in server.log(), f"no recovery; serve.py exited:\n{server.log()[-3000:]}"
            recovered_at = time.monotonic()
            # Let the probes reach the recovered model: one correct answer sent after the report.
            wait_for(lambda: any(p.lines is not None and p.finished_at - p.seconds > recovered_at for p in probes),
                     PROBE_TIMEOUT, "a probe sent after the recovery is answered")
        finally:
            done.set()
            prober.join(PROBE_TIMEOUT + 10)
        assert not prober.is_alive(), "a probe request hung past the client timeout"
        yield Recovery(server, outcome, outcome.finished_at - kill.killed_at, deltas(before, after, wanted), reference,
                       reference_http, triton_pid, kill.stub_pid, probes, recovered_at)
    finally:
        server.stop()
        # Nothing may keep running and no /dev/shm region may stay behind, after a crash and a recovery.
        assert server.leftover_processes == [], server.leftover_processes
        assert server.leftover_shm == [], f"shared memory left in /dev/shm: {server.leftover_shm}"


def test_in_flight_request_gets_an_error_not_a_hang(recovery):
    outcome = recovery.in_flight
    assert outcome.kind == "error", outcome
    assert outcome.status == "500" and "Stub process" in outcome.message and "not healthy" in outcome.message, outcome
    assert recovery.seconds_after_kill < HANG_GUARD, f"the error came {recovery.seconds_after_kill:.1f} s after the kill"
    # Triton counts it as a backend failure, not a success.
    assert recovery.failures_delta == {"backend_failures": 1, "success": 0}, recovery.failures_delta


def test_the_server_stays_up_and_a_new_stub_serves_the_model(recovery):
    """Same serve.py and tritonserver processes; a fresh stub; ready; the log says what happened."""
    server = recovery.server
    assert server.process.poll() is None, server.log()[-3000:]
    assert tritonserver_pid(server) == recovery.triton_pid
    new_stub = stub_process(server)  # exactly one live stub of the aligner (silero_vad has its own)
    assert new_stub.pid != recovery.killed_stub, new_stub
    assert http_status(f"http://{server.http_url}/v2/models/{MODEL}/ready") == 200
    assert server.is_ready()
    log = server.log()
    assert f"Python backend stub {recovery.killed_stub} died" in log and f"reloading model {MODEL}" in log, log[-3000:]
    assert RECOVERED in log and "stopping tritonserver" not in log, log[-3000:]


def test_inference_after_recovery_gives_the_same_answer_as_before(recovery):
    server = recovery.server
    http = once_http(server.http_url, *short_request(), headers=HTTP_KEY)
    grpc = once_grpc(server.grpc_url, *short_request(), headers=GRPC_KEY)
    assert http.kind == "ok" and http.lines == recovery.reference_http.lines, (http, recovery.reference_http)
    assert grpc.kind == "ok" and grpc.lines == recovery.reference_http.lines, grpc
    assert align(server, "grpc") == recovery.reference


def test_requests_during_recovery_get_a_retryable_error_or_the_right_answer(recovery):
    """Every probe came back before the client timeout, either answered correctly or as ServerUnavailableError."""
    probes = recovery.probes
    assert probes, "no request was sent during the recovery"
    wrong = [p for p in probes if p.lines is not None and p.lines != recovery.reference]
    assert not wrong, wrong
    not_retryable = [p for p in probes if p.error is not None and not isinstance(p.error, ServerUnavailableError)]
    assert not not_retryable, [(p.protocol, type(p.error).__name__, str(p.error)) for p in not_retryable]
    timed_out = [p for p in probes if p.seconds >= PROBE_TIMEOUT - 1 or "timed out" in str(p.error or "")]
    assert not timed_out, [(p.protocol, p.seconds, str(p.error)) for p in timed_out]
    # The probes did cover the recovery: some were refused while the model was away. (Which
    # protocols caught a refusal depends on how long the reload takes; the classifier's answer for
    # each status of both protocols is pinned in tests/client/test_client_recovery_errors.py.)
    assert [p for p in probes if p.error is not None], probes


def _wait_for_exit(server, timeout: float) -> int:
    """Wait for serve.py to exit by itself, noting every /dev/shm region its processes map meanwhile."""
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        server.shm_files |= server.mapped_shm_files()
        if time.monotonic() > deadline:
            pytest.fail(f"the server still runs {timeout} s after the kill; ready: {server.is_ready()}")
        time.sleep(0.05)  # polling interval while the supervisor works
    return server.process.returncode


def test_a_failed_reload_stops_the_server_with_status_1(tiny_model_dir, server_logs, tmp_path):
    """The checkpoint this test owns is removed before the kill: the loaded model does not need its
    files any more, the reload does, so it fails, and the supervisor stops the server."""
    model_dir = tmp_path / "checkpoint"
    shutil.copytree(tiny_model_dir, model_dir)
    server = start_server(model_dir, server_logs, api_key=KEY, serve_args=("--exit-timeout", "5"))
    try:
        assert once_http(server.http_url, *short_request(), headers=HTTP_KEY).kind == "ok"
        stub = stub_process(server)
        shutil.rmtree(model_dir)
        os.kill(stub.pid, signal.SIGKILL)
        status = _wait_for_exit(server, RELOAD_DEADLINE + EXIT_DEADLINE)
        log = server.log()
        assert status == 1, log[-3000:]
        failure = [line for line in log.splitlines() if f"reloading model {MODEL} failed" in line]
        assert failure and "load answered 400" in failure[0] and str(model_dir) in failure[0], log[-3000:]
        assert "does not exist" in failure[0] and "stopping tritonserver" in failure[0], failure
        assert RECOVERED not in log
        assert server.descendant_pids() == []
    finally:
        server.stop()
        assert server.leftover_processes == [], server.leftover_processes
        assert server.leftover_shm == [], f"shared memory left in /dev/shm: {server.leftover_shm}"


STOP_EXIT_TIMEOUT = 30  # the stop below must end long before this runs out
STOP_GRACE = 15.0       # seconds a stop after a recovery may take (the healthy models' finalize() included)


def test_a_stop_after_a_recovery_with_failed_requests_ends_in_time_with_status_0(tiny_model_dir, server_logs):
    """Triton 2.51 never finishes unloading the copy whose requests failed on its dead stub: without the
    supervisor's help SIGTERM then waits the whole --exit-timeout and exits 1, leaving its /dev/shm region."""
    server = start_server(tiny_model_dir, server_logs, api_key=KEY, serve_args=("--exit-timeout", str(STOP_EXIT_TIMEOUT)))
    try:
        assert kill_the_stub_under_a_request(server, seed=11).outcome().kind == "error"
        wait_for(lambda: RECOVERED in server.log() or server.process.poll() is not None, RELOAD_DEADLINE,
                 "the supervisor reports the model recovered")
        assert RECOVERED in server.log(), server.log()[-3000:]
        assert once_http(server.http_url, *short_request(), headers=HTTP_KEY).kind == "ok"
    finally:
        started = time.monotonic()
        status = server.stop(timeout=STOP_EXIT_TIMEOUT + 30)
        took = time.monotonic() - started
    assert status == 0, f"exit status {status} after {took:.1f} s:\n{server.log()[-3000:]}"
    assert took < STOP_GRACE, f"the stop took {took:.1f} s (exit timeout {STOP_EXIT_TIMEOUT} s)"
    assert FINALIZED in server.log(), "the recovered model's finalize() did not run"
    assert server.leftover_processes == [], server.leftover_processes
    assert server.leftover_shm == [], f"shared memory left in /dev/shm: {server.leftover_shm}"
