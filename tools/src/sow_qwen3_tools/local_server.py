"""Start and stop the real tritonserver through scripts/serve.py, as a child process.

Used by the tests, the demo and the benchmarks. Servers bind to 127.0.0.1 on
free ports; each gets a unique ``--id`` so that a caller talks to its own
server and not to one that already held the port. Only processes started here
are signalled, by PID.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from sow_qwen3_server.supervisor import WATCHING

from . import REPO

SERVE = REPO / "scripts" / "serve.py"
SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region"
# Set by tests/conftest.py to the id of a running test without the ``server`` marker: start_server refuses then.
WITHOUT_SERVER_MARK = "SOW_QWEN3_TEST_WITHOUT_SERVER_MARK"
STUB_NAME = "triton_python_backend_stub"[:15]  # a zombie's name is cut to the kernel's 15 characters


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """The HTTP status of GET ``url`` (0 when nothing answers)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass
class RunningServer:
    """A tritonserver started by ``start_server``."""

    process: subprocess.Popen
    server_id: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    api_key: str | None = None
    shm_files: set[str] = field(default_factory=set)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_ready(self) -> bool:
        return http_status(f"http://{self.http_url}/v2/health/ready") == 200

    def watched(self) -> bool:
        """serve.py's supervisor has seen the model's own ready endpoint answer 200 and watches its stubs.

        In explicit model-control mode the server is ready before the model is: this waits for the model.
        """
        return WATCHING in self.log()

    def descendant_pids(self) -> list[int]:
        """PIDs of the processes under serve.py: tritonserver and its Python backend stubs."""
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stub_pids(self) -> list[int]:
        """PIDs of the Python backend stub processes of this server (zombies included)."""
        return [pid for pid in self.descendant_pids() if _name(pid).startswith(STUB_NAME)]

    def mapped_shm_files(self) -> set[str]:
        """The Python backend's /dev/shm regions that this server's processes map."""
        found = set()
        for pid in self.descendant_pids():
            try:
                for mapping in psutil.Process(pid).memory_maps(grouped=True):
                    if mapping.path.startswith(SHM_PREFIX):
                        found.add(mapping.path)
            except psutil.Error:
                continue
        return found

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for exit, and return the exit status.

        Kills with SIGKILL after ``timeout``. Then removes any of this server's
        shared-memory regions that are left behind (a killed server leaves them)
        and returns the status; ``leftover_shm`` records what had to be removed.
        """
        started = self.descendant_pids()
        self.shm_files |= self.mapped_shm_files()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.leftover_processes = [pid for pid in started if psutil.pid_exists(pid) and _not_zombie(pid)]
        self.leftover_shm = sorted(path for path in self.shm_files if os.path.exists(path))
        for path in self.leftover_shm:
            os.unlink(path)
        return self.process.returncode


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return ""


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_server(
    model_dir: Path,
    log_dir: Path,
    *,
    api_key: str | None = None,
    serve_args: tuple[str, ...] = (),
    triton_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 180.0,
) -> RunningServer:
    """Start scripts/serve.py on free loopback ports and wait until it answers.

    With ``wait_ready`` it returns once /v2/health/ready is 200 and serve.py's
    supervisor has seen the model ready (``RunningServer.watched``), else once
    the server is live and reports our id. Raises RuntimeError with the
    server's log if it exits or does not get there within ``timeout`` seconds.

    Under the tests it refuses, with a RuntimeError naming the test, when
    SOW_QWEN3_TEST_WITHOUT_SERVER_MARK is set: tests/conftest.py sets it to the
    node id of each test that lacks the ``server`` marker (and clears it for
    those that carry it), so ``pytest -m "not server"`` never starts one.
    """
    unmarked = os.environ.get(WITHOUT_SERVER_MARK)
    if unmarked:
        raise RuntimeError(f"{unmarked} starts tritonserver without the pytest marker 'server': "
                           f"mark it (pytestmark = pytest.mark.server) so that -m \"not server\" starts none")
    http_port, grpc_port, metrics_port = free_ports(3)
    server_id = f"sow-qwen3-{uuid.uuid4().hex[:12]}"
    log_path = Path(log_dir) / f"{server_id}.log"
    command = [
        sys.executable, str(SERVE), "--model-dir", str(model_dir),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--id", server_id, "--exit-timeout", "10", *serve_args,
    ]
    if api_key:
        command += ["--api-key", api_key]
    if triton_args:
        command += ["--", *triton_args]
    child_env = {**os.environ, **(env or {})}
    if api_key is None:
        child_env.pop("SOW_QWEN3_API_KEY", None)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=child_env, cwd=REPO)
    server = RunningServer(process, server_id, http_port, grpc_port, metrics_port, log_path, api_key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {process.returncode}:\n{server.log()[-4000:]}")
        if _reports_id(server) and (not wait_ready or (server.is_ready() and server.watched())):
            server.shm_files = server.mapped_shm_files()
            return server
        time.sleep(0.2)  # polling interval while waiting for the condition above
    server.stop()
    raise RuntimeError(f"tritonserver not {'ready' if wait_ready else 'live'} after {timeout} s:\n{server.log()[-4000:]}")


def _reports_id(server: RunningServer) -> bool:
    try:
        with urllib.request.urlopen(f"http://{server.http_url}/v2", timeout=2) as response:
            return json.load(response).get("name") == server.server_id
    except (OSError, ValueError):
        return False
