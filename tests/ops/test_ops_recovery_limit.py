"""A stub that keeps dying is reloaded only so often: then the server stops with status 1 and says why.

serve.py's supervisor reloads a model whose Python backend stub died
(tests/ops/test_ops_stub_crash.py), at most SOW_QWEN3_MAX_RECOVERIES times
within SOW_QWEN3_RECOVERY_WINDOW_MINUTES; the next death stops the server with
one ERROR line, so the orchestrator's restart policy and the operator see it.
The counting rule alone is tested in tests/server/test_triton_supervisor.py.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
from ops_helpers import stub_process, wait_for

from sow_qwen3_tools.local_server import start_server
from support.infer import MODEL

pytestmark = pytest.mark.server  # needs the real tritonserver

RELOAD_DEADLINE = 240.0  # seconds from a kill to "recovered": the supervisor's 180 s reload bound + detection
EXIT_DEADLINE = 10 + 15 + 30  # start_server's --exit-timeout + the supervisor's kill grace + margin
RECOVERED = f"model {MODEL} recovered"
LIMIT = {"SOW_QWEN3_MAX_RECOVERIES": "1", "SOW_QWEN3_RECOVERY_WINDOW_MINUTES": "10"}


def _new_stub(server, old_pid: int):
    """The aligner's live stub once it is not ``old_pid`` any more (the reload started a new one)."""
    found: list = []

    def replaced() -> bool:
        try:
            stub = stub_process(server)
        except AssertionError:  # none, or the old one's zombie beside the new one starting
            return False
        found[:] = [stub]
        return stub.pid != old_pid

    wait_for(replaced, RELOAD_DEADLINE, "a new stub serves the model")
    return found[0]


def _exit_status(server, timeout: float) -> int:
    """serve.py's exit status once it exits by itself (fails after ``timeout`` seconds)."""
    wait_for(lambda: server.process.poll() is not None, timeout, "serve.py exits by itself")
    return server.process.returncode


def test_the_death_after_the_allowed_recoveries_stops_the_server_with_status_1(tiny_model_dir, server_logs):
    server = start_server(tiny_model_dir, server_logs, env=LIMIT)
    try:
        first = stub_process(server)
        os.kill(first.pid, signal.SIGKILL)  # recovery 1 of 1: allowed
        wait_for(lambda: RECOVERED in server.log() or server.process.poll() is not None, RELOAD_DEADLINE,
                 "the supervisor reports the model recovered")
        assert server.process.poll() is None and RECOVERED in server.log(), server.log()[-3000:]
        second = _new_stub(server, first.pid)
        os.kill(second.pid, signal.SIGKILL)  # recovery 2 within the window: refused
        killed = time.monotonic()
        status = _exit_status(server, EXIT_DEADLINE)
        took = time.monotonic() - killed
    finally:
        server.stop()
    log = server.log()
    assert status == 1, log[-3000:]
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.startswith("serve.py: ERROR: ") and f"model {MODEL}" in error, error
    assert "after 1 recovery in" in error and "minutes" in error, error
    assert "SOW_QWEN3_MAX_RECOVERIES=1" in error and "SOW_QWEN3_RECOVERY_WINDOW_MINUTES=10" in error, error
    assert log.count(RECOVERED) == 1 and log.count(f"reloading model {MODEL}") == 1, log[-3000:]
    assert took < EXIT_DEADLINE
    assert server.leftover_processes == [], server.leftover_processes
    assert server.leftover_shm == [], f"shared memory left in /dev/shm: {server.leftover_shm}"
