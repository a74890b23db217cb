"""Stopping a test server and checking it left nothing behind."""
from __future__ import annotations

from server_process import RunningServer


def assert_clean_stop(server: RunningServer) -> None:
    """Stop ``server`` and fail if it did not exit cleanly and leave nothing behind."""
    status = server.stop()
    assert status == 0, f"tritonserver exited with {status}:\n{server.log()[-3000:]}"
    assert server.leftover_processes == [], f"stub processes left running: {server.leftover_processes}"
    assert server.leftover_shm == [], f"shared memory left behind: {server.leftover_shm}"
