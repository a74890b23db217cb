"""Start and stop the real nginx front proxy (the ``sow-qwen3-proxy`` console script) in front of a test server."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sow_qwen3_tools.local_server import RunningServer, free_ports

PROXY = str(Path(sys.executable).parent / "sow-qwen3-proxy")


@dataclass
class RunningProxy:
    """nginx started by ``start_proxy`` (the console script execs it, so the PID is nginx's master)."""

    process: subprocess.Popen
    ports: dict[str, int]  # "http", "grpc", "metrics" -> loopback port
    log_path: Path

    def url(self, listener: str) -> str:
        """host:port of the "http", "grpc" or "metrics" listener."""
        return f"127.0.0.1:{self.ports[listener]}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGQUIT (nginx's graceful stop, as docker compose stop sends it); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass(frozen=True)
class Upstream:
    """Loopback ports the proxy forwards to when they are not a RunningServer's."""

    http_port: int
    grpc_port: int
    metrics_port: int


def start_proxy(server: RunningServer | Upstream, log_dir: Path, env: dict[str, str] | None = None,
                timeout: float = 30.0) -> RunningProxy:
    """``sow-qwen3-proxy`` on free loopback ports in front of ``server``; returns once it accepts connections.

    ``env`` adds settings (SOW_QWEN3_MAX_BODY_SIZE, SOW_QWEN3_PROXY_TIMEOUT, SOW_QWEN3_TLS_*). Raises
    RuntimeError with the proxy's log if it exits or does not listen in time.
    """
    http_port, grpc_port, metrics_port = free_ports(3)
    command = [
        PROXY, "--upstream", "127.0.0.1", "--listen-address", "127.0.0.1",
        "--upstream-http-port", str(server.http_port), "--upstream-grpc-port", str(server.grpc_port),
        "--upstream-metrics-port", str(server.metrics_port),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
    ]
    child_env = {name: value for name, value in os.environ.items() if not name.startswith("SOW_QWEN3_")}
    log_path = Path(log_dir) / f"proxy-{http_port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env={**child_env, **(env or {})})
    proxy = RunningProxy(process, {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sow-qwen3-proxy exited with {process.returncode}:\n{proxy.log()[-3000:]}")
        if all(_listening(port) for port in (http_port, grpc_port, metrics_port)):
            return proxy
        time.sleep(0.1)  # polling interval while nginx starts
    proxy.stop()
    raise RuntimeError(f"sow-qwen3-proxy not listening after {timeout} s:\n{proxy.log()[-3000:]}")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
