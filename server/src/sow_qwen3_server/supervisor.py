"""Run tritonserver as a child process and bring its model back when a Python backend stub dies.

Triton 2.51 neither restarts a crashed stub (an OOM kill, a segfault) nor stops
reporting ready: every later request fails with "Stub process ... is not
healthy". ``supervise`` reloads the model in place through Triton's repository
API (unload, then load: explicit model-control mode), which starts a fresh
stub while the server keeps running. Only when that reload fails, or the model
is not ready again within ``RELOAD_TIMEOUT`` seconds, does it stop the server
and exit with status 1, so a restart policy (Docker's ``restart:
unless-stopped``, systemd, Kubernetes) brings the service back. It also
forwards SIGTERM/SIGINT/SIGHUP to the server, makes the server get SIGTERM if
this process dies, and removes the server's /dev/shm regions if the server
does not (it leaves them when it is killed). Linux only, like tritonserver.

Two limits keep a recovery from making things worse. A stub that dies again
and again (on every load, on every request) is reloaded at most
``RecoveryLimit.count`` times within ``RecoveryLimit.window`` seconds; the next
death stops the server with status 1 and one ERROR line, so the restart policy
and the operator see it. And a stop after a recovery ends within the exit
timeout with status 0 although Triton 2.51 never finishes unloading a copy
whose requests failed on its dead stub (see ``StuckUnload``).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

STUB_COMM = "triton_python_backend_stub"[:15]  # the kernel keeps 15 characters of a process name
POLL_SECONDS = 1.0
CRASH_STATUS = 1
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1
WATCHING = "the model is ready; from now on a Python backend stub that dies gets the model reloaded"
# Seconds a reload (unload + load) may take before the server is stopped instead:
# as long as compose's start_period gives the first load (a loaded 2-core host needed 57 s).
RELOAD_TIMEOUT = 180.0
READY_POLL_SECONDS = 0.1
# Seconds between seeing a dead stub and unloading its model. Triton 2.51 fails each request
# held by a dead stub after about a second of health checks, but a request still held when the
# unload starts gets its error only when the reload ends (measured: 30-60 s on 2 busy cores).
DRAIN_SECONDS = 2.0
# Seconds tritonserver gets to exit by itself, during a stop after a recovery, once none of its stubs
# is alive any more (Triton checks its live models once a second): past that it only waits for a
# crashed copy's unload, which Triton 2.51 never finishes.
SETTLE_SECONDS = 2.0
STOP_POLL_SECONDS = 0.2
MAX_RECOVERIES = 5
RECOVERY_WINDOW_MINUTES = 10.0
MAX_RECOVERIES_ENV = "SOW_QWEN3_MAX_RECOVERIES"
RECOVERY_WINDOW_ENV = "SOW_QWEN3_RECOVERY_WINDOW_MINUTES"


@dataclass(frozen=True)
class ModelEndpoint:
    """The served model on Triton's HTTP API: where to ask whether it is ready and how to reload it.

    ``api_key`` ("" when auth is off) goes in the ``api-key`` header of the
    repository calls, which serve.py restricts; it never appears in a message.
    """

    base_url: str  # http://host:port
    name: str
    api_key: str = field(default="", repr=False)

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.name}/ready"

    def repository_url(self, action: str) -> str:
        """The repository API's URL for ``action`` ("load" or "unload") of this model."""
        return f"{self.base_url}/v2/repository/models/{self.name}/{action}"

    @property
    def headers(self) -> dict[str, str]:
        return {"api-key": self.api_key} if self.api_key else {}


@dataclass(frozen=True)
class ProcessState:
    pid: int
    parent: int
    name: str
    state: str  # one letter as in /proc/PID/stat: R, S, D, Z, ...
    model: str = ""  # for a Python backend stub: the model it serves ("" when not known)


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


def stub_model(pid: int, proc: Path = Path("/proc")) -> str:
    """The model a live Python backend stub serves: its first argument is MODEL/VERSION/model.py.

    "" when the process has ended or is a zombie (whose command line is gone).
    """
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return Path(argv[1].decode(errors="replace")).parent.parent.name if len(argv) > 1 and argv[1] else ""


def stubs_of(pid: int) -> list[ProcessState]:
    """The Python backend stubs among the children of ``pid`` (zombies included), with their models."""
    return [replace(child, model=stub_model(child.pid)) for child in children(pid) if child.name == STUB_COMM]


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
    The crashed stub comes back with the model it served, remembered from
    when it was alive (a zombie's command line is gone).
    """

    seen: dict[int, str] = field(default_factory=dict)  # pid -> model of the live stubs watched

    def crashed(self, stubs: list[ProcessState], ready_seen: bool) -> ProcessState | None:
        alive = {stub.pid: stub.model for stub in stubs if stub.state != "Z"}
        if not ready_seen:
            self.seen = alive
            return None
        zombies = [stub for stub in stubs if stub.state == "Z" and stub.pid in self.seen]
        if zombies:
            return replace(zombies[0], model=self.seen[zombies[0].pid])
        gone = sorted(self.seen.keys() - {stub.pid for stub in stubs})
        for pid, model in alive.items():
            self.seen.setdefault(pid, model)
        if gone:
            return ProcessState(gone[0], -1, STUB_COMM, "gone", self.seen[gone[0]])
        return None

    def excuse(self, pid: int) -> None:
        """Stop watching ``pid``: its end was deliberate."""
        self.seen.pop(pid, None)

    def restart(self, stubs: list[ProcessState]) -> None:
        """Watch exactly the live ones of ``stubs`` from now on (the stubs of a freshly loaded model)."""
        self.seen = {stub.pid: stub.model for stub in stubs if stub.state != "Z"}


@dataclass
class RecoveryLimit:
    """At most ``count`` recoveries (model reloads after a dead stub) within any ``window`` seconds.

    ``allow(now)`` is asked when a dead stub is seen: True (and the recovery is
    counted) while fewer than ``count`` recoveries started in the ``window``
    seconds up to ``now``; False once ``count`` did, so the next one is refused
    and the server is stopped. ``count`` 0 refuses every recovery. Times are
    time.monotonic() values; recoveries older than the window are forgotten.
    """

    count: int = MAX_RECOVERIES
    window: float = RECOVERY_WINDOW_MINUTES * 60
    started: list[float] = field(default_factory=list)  # when the recoveries still in the window started

    def allow(self, now: float) -> bool:
        self.started = [when for when in self.started if now - when < self.window]
        if len(self.started) >= self.count:
            return False
        self.started.append(now)
        return True

    def refusal(self, model: str, now: float) -> str:
        """The one ERROR line for a refused recovery of ``model``: how many, in how long, which settings."""
        span = (now - self.started[0]) / 60 if self.started else 0.0
        made = f"{len(self.started)} {'recovery' if len(self.started) == 1 else 'recoveries'}"
        return (f"ERROR: the Python backend stub of model {model} died again after {made} "
                f"in {span:.1f} minutes ({MAX_RECOVERIES_ENV}={self.count} within "
                f"{RECOVERY_WINDOW_ENV}={self.window / 60:g}); not reloading it again: stopping tritonserver "
                "with status 1 so the service is restarted")


@dataclass
class StuckUnload:
    """Tells, during a stop after a recovery, when tritonserver waits only for an unload that never ends.

    In Triton 2.51 the unload of a model copy whose stub died while requests
    were failing on it never completes: on SIGTERM Triton lets the in-flight
    requests finish, unloads every other model (their stubs run finalize() and
    exit), then counts the dead copy as a live model until --exit-timeout runs
    out and exits 1 ("Exit timeout expired"), leaving its /dev/shm region. Triton
    starts unloading only once no inference is in flight, so when none of its
    stubs is alive any more all real work is done; if it still runs
    ``settle`` seconds later (it checks once a second), ``stuck`` holds and the
    supervisor ends it (SIGKILL: a second SIGTERM is ignored), removes its
    regions and reports a clean stop, status 0. ``drained`` says whether that
    point was reached, so that an exit 1 by Triton's own timeout after it is
    clean too; an exit before it (requests still running at the timeout) is not.
    """

    settle: float = SETTLE_SECONDS
    idle_since: float | None = None  # when no stub was alive any more (None while one is)

    def stuck(self, stubs: list[ProcessState], now: float) -> bool:
        if any(stub.state != "Z" for stub in stubs):
            self.idle_since = None
            return False
        if self.idle_since is None:
            self.idle_since = now
        return now - self.idle_since >= self.settle

    @property
    def drained(self) -> bool:
        return self.idle_since is not None


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


def _post(url: str, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST an empty body; the status (None when nothing answered) and the body or the error."""
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return None, f"{type(error).__name__}: {error}"


def _wait_ready_status(url: str, wanted: Callable[[int | None], bool], deadline: float,
                       abandoned: Callable[[], bool]) -> int | None:
    """Poll the readiness endpoint until its status satisfies ``wanted``; the last status seen.

    Gives up at ``deadline`` (a time.monotonic() value) or as soon as ``abandoned()`` holds.
    """
    while True:
        status = _ready_status(url)
        if wanted(status) or abandoned() or time.monotonic() >= deadline:
            return status
        time.sleep(READY_POLL_SECONDS)  # polling interval of the readiness endpoint


def reload_model(model: ModelEndpoint, timeout: float, abandoned: Callable[[], bool]) -> str | None:
    """Unload ``model`` and load it again, so that Triton starts fresh stubs; None once it is ready again.

    Otherwise returns why not: the repository API refused (not in explicit
    model-control mode, a wrong key), the load failed (Triton's message, e.g.
    the checkpoint is gone), or the model was not ready within ``timeout``
    seconds. Stops early, returning why, when ``abandoned()`` holds (the
    server is shutting down or has exited). A bare load of a model whose stub
    died does nothing in Triton 2.51: the unload comes first.
    """
    if abandoned():
        return "the server is stopping"
    deadline = time.monotonic() + timeout
    status, body = _post(model.repository_url("unload"), model.headers, timeout)
    if status != 200:
        return f"unload answered {status}: {body.strip()[:300]}"
    still_ready = _wait_ready_status(model.ready_url, lambda got: got != 200, deadline, abandoned)
    if still_ready == 200:
        return f"model {model.name} still reported ready {timeout:.0f} s after the unload"
    if abandoned():
        return "the server is stopping"
    status, body = _post(model.repository_url("load"), model.headers, max(deadline - time.monotonic(), 1.0))
    if status != 200:
        return f"load answered {status}: {body.strip()[:300]}"
    if _wait_ready_status(model.ready_url, lambda got: got == 200, deadline, abandoned) != 200:
        return f"model {model.name} was not ready within {timeout:.0f} s"
    return None


def _say(message: str) -> None:
    print(f"serve.py: {message}", file=sys.stderr, flush=True)


def _stop_status(server: subprocess.Popen, recovered: bool, deadline: float) -> int:
    """Wait for ``server`` (already signalled) to exit; its exit status, 0 for a clean stop after a recovery.

    After a recovery Triton may never exit by itself (``StuckUnload``): once
    it only waits for the crashed copy's unload it is killed and the stop is
    clean. Killed too when still running at ``deadline`` (time.monotonic()).
    """
    watch = StuckUnload()
    while True:
        try:
            status = server.wait(timeout=STOP_POLL_SECONDS)
            return 0 if recovered and status == 1 and watch.drained else status
        except subprocess.TimeoutExpired:
            pass
        if recovered and watch.stuck(stubs_of(server.pid), time.monotonic()):
            _say("tritonserver has finished its requests and unloaded its models but waits for the unload of a "
                 "model copy whose stub died, which Triton never finishes: ending it now")
            server.kill()
            server.wait()
            return 0
        if time.monotonic() >= deadline:
            server.kill()
            return server.wait()


def _refuse(limit: RecoveryLimit, model: str, started: float) -> str | None:
    """None when a recovery of ``model`` may start now, else the ERROR line that refuses it."""
    return None if limit.allow(started) else limit.refusal(model, started)


def supervise(argv: list[str], env: dict[str, str], model: ModelEndpoint, exit_timeout: float,
              reload_timeout: float = RELOAD_TIMEOUT, limit: RecoveryLimit | None = None) -> int:
    """Run ``argv`` until it exits; return its exit status (128+N for signal N).

    A stub that dies after ``model`` was ready gets the model it served (``model``,
    or another model of the server such as silero_vad) reloaded in place
    (``reload_model``); if that fails, or ``limit`` (default: RecoveryLimit())
    refuses another recovery, the server is stopped and the result is 1. A stop
    signal after a recovery ends with 0 within the exit timeout (``_stop_status``).
    """
    limit = RecoveryLimit() if limit is None else limit
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
    ready_seen = recovered = False
    regions: set[str] = set()
    failed = False
    while True:
        try:
            status = server.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping:
            status = _stop_status(server, recovered, time.monotonic() + exit_timeout + 15)
            break
        regions |= shm_regions(server.pid)
        if not ready_seen:
            ready_seen = _ready_status(model.ready_url) == 200
            if ready_seen:
                _say(WATCHING)
        crash = watch.crashed(stubs_of(server.pid), ready_seen)
        if crash is None:
            continue
        served = replace(model, name=crash.model or model.name)  # the model the dead stub served
        if _ready_status(served.ready_url) not in (200, None):
            watch.excuse(crash.pid)  # the server says not ready: an unload, not a crash
            continue
        started = time.monotonic()
        problem = _refuse(limit, served.name, started)
        if problem is None:
            _say(f"Python backend stub {crash.pid} died ({'zombie' if crash.state == 'Z' else 'gone'}) "
                 f"and Triton does not restart it; reloading model {served.name} (unload, then load)")
            recovered = True
            problem = _recover(server, served, reload_timeout, lambda: stopping or server.poll() is not None)
            if stopping or server.poll() is not None:
                continue  # a stop signal or the server's own exit: the loop collects its status
            if problem is None:
                watch.restart(stubs_of(server.pid))
                _say(f"model {served.name} recovered: ready again {time.monotonic() - started:.1f} s after "
                     "the dead stub was seen, served by a new stub")
                continue
            problem = f"error: reloading model {served.name} failed: {problem}; " \
                      "stopping tritonserver so the service can be restarted"
        _say(problem)
        failed = stopping = True
        server.terminate()
        _stop_status(server, recovered, time.monotonic() + exit_timeout + 15)
        break
    for path in regions:
        if os.path.exists(path):
            os.unlink(path)
    if failed:
        return CRASH_STATUS
    return 128 - status if status < 0 else status


def _recover(server: subprocess.Popen, served: ModelEndpoint, reload_timeout: float,
             abandoned: Callable[[], bool]) -> str | None:
    """Give Triton DRAIN_SECONDS to fail the requests the dead stub holds, then reload ``served``;
    None once it is ready again, else why not (``reload_model``)."""
    try:
        server.wait(timeout=DRAIN_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    return reload_model(served, reload_timeout, abandoned)
