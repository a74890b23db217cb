"""Run tritonserver as a child process and end it when a Python backend stub dies.

Triton 2.51 neither restarts a crashed stub (an OOM kill, a segfault) nor stops
reporting ready: every later request fails with "Stub process ... is not
healthy". ``supervise`` turns that state into an exit with status 1, so a
restart policy (Docker's ``restart: unless-stopped``, systemd, Kubernetes)
brings the service back. It also forwards SIGTERM/SIGINT/SIGHUP to the server,
makes the server get SIGTERM if this process dies, and removes the server's
/dev/shm regions if the server does not (it leaves them when it is killed).
Linux only, like tritonserver.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STUB_COMM = "triton_python_backend_stub"[:15]  # the kernel keeps 15 characters of a process name
POLL_SECONDS = 1.0
CRASH_STATUS = 1
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1
WATCHING = "the model is ready; from now on a Python backend stub that dies stops the server"


@dataclass(frozen=True)
class ProcessState:
    pid: int
    parent: int
    name: str
    state: str  # one letter as in /proc/PID/stat: R, S, D, Z, ...


def read_stat(text: str) -> ProcessState:
    """Parse one /proc/PID/stat line (the name may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    pid, _, name = head.partition(" (")
    fields = rest.split()
    return ProcessState(int(pid), int(fields[1]), name, fields[0])


def children(pid: int, proc: Path = Path("/proc")) -> list[ProcessState]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state = read_stat(stat.read_text())
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        if state.parent == pid:
            found.append(state)
    return found


def shm_regions(pid: int) -> set[str]:
    """The /dev/shm files process ``pid`` has mapped (the Python backend's shared memory)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {line.split(maxsplit=5)[5] for line in maps.splitlines()
            if "/dev/shm/" in line and not line.endswith("(deleted)") and len(line.split(maxsplit=5)) == 6}


@dataclass
class StubWatch:
    """Decides from successive looks at the server's children whether a stub has crashed.

    A stub is a suspect when it disappears or turns zombie after the model
    was ready. Stubs that end while the model loads (a load failure Triton
    reports itself) or while the server shuts down are not. ``supervise``
    then asks the server: a crash leaves it reporting ready, while a
    deliberate unload (explicit model control) makes it not ready first.
    """

    seen: set[int] = field(default_factory=set)

    def crashed(self, stubs: list[ProcessState], ready_seen: bool) -> ProcessState | None:
        alive = {stub.pid for stub in stubs if stub.state != "Z"}
        if not ready_seen:
            self.seen = alive
            return None
        zombies = [stub for stub in stubs if stub.state == "Z" and stub.pid in self.seen]
        if zombies:
            return zombies[0]
        gone = self.seen - {stub.pid for stub in stubs}
        self.seen |= alive
        if gone:
            return ProcessState(min(gone), -1, STUB_COMM, "gone")
        return None

    def excuse(self, pid: int) -> None:
        """Stop watching ``pid``: its end was deliberate."""
        self.seen.discard(pid)


def _die_with_parent() -> None:
    """In the child before exec: own process group (terminal signals reach only the
    supervisor, which forwards them once) and SIGTERM when the supervisor dies."""
    os.setpgid(0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _ready_status(url: str) -> int | None:
    """The HTTP status of the readiness endpoint, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _say(message: str) -> None:
    print(f"serve.py: {message}", file=sys.stderr, flush=True)


def supervise(argv: list[str], env: dict[str, str], ready_url: str, exit_timeout: float) -> int:
    """Run ``argv`` until it exits; return its exit status (128+N for signal N), or 1 after a stub crash."""
    server = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if server.poll() is None:
            server.send_signal(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    watch = StubWatch()
    ready_seen = False
    regions: set[str] = set()
    crash: ProcessState | None = None
    while True:
        try:
            status = server.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping:
            continue
        regions |= shm_regions(server.pid)
        if not ready_seen:
            ready_seen = _ready_status(ready_url) == 200
            if ready_seen:
                _say(WATCHING)
        stubs = [child for child in children(server.pid) if child.name == STUB_COMM]
        crash = watch.crashed(stubs, ready_seen)
        if crash is not None and _ready_status(ready_url) not in (200, None):
            watch.excuse(crash.pid)  # the server says not ready: an unload, not a crash
            crash = None
        if crash is not None:
            _say(f"Python backend stub {crash.pid} died ({'zombie' if crash.state == 'Z' else 'gone'}) "
                 "and Triton does not restart it; stopping tritonserver so the service can be restarted")
            stopping = True
            server.terminate()
            try:
                server.wait(timeout=exit_timeout + 15)
            except subprocess.TimeoutExpired:
                server.kill()
            status = server.wait()
            break
    for path in regions:
        if os.path.exists(path):
            os.unlink(path)
    if crash is not None:
        return CRASH_STATUS
    return 128 - status if status < 0 else status
