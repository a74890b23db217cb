"""Stopping a test server and checking it left nothing behind."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sow_qwen3_tools.local_server import RunningServer, start_server


def assert_clean_stop(server: RunningServer) -> None:
    """Stop ``server`` and fail if it did not exit cleanly and leave nothing behind."""
    status = server.stop()
    assert status == 0, f"tritonserver exited with {status}:\n{server.log()[-3000:]}"
    assert server.leftover_processes == [], f"stub processes left running: {server.leftover_processes}"
    assert server.leftover_shm == [], f"shared memory left behind: {server.leftover_shm}"


def serving(model_dir: Path, log_dir: Path, env: dict[str, str]) -> Iterator[RunningServer]:
    """A fixture's body: the real server with ``env``, ready; stopped cleanly after the tests."""
    server = start_server(model_dir, log_dir, env=env)
    yield server
    assert_clean_stop(server)
