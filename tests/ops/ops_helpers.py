"""Shared pieces of the operations tests: requests with outcomes, metrics, polling, stub watching.

Every call here has a client-side timeout, so a server that stops answering
shows up as an "error" outcome, never as a hung test.
"""
from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass

import numpy as np
import psutil
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.audio import noise, speech
from support.infer import MODEL, Lines, build_inputs, lines_of

CLIENT_TIMEOUT = 120.0  # seconds; every request made by these tests is bounded by it

# 2400 alignable units (the model's limit is 2500): with a clip of a few
# minutes one request keeps the tiny model busy for a second or more.
SLOW_LYRICS = "哈利路亚 " * 600
ZH = "奇异恩典 何等甘甜\n我罪已得赦免\n前我失丧 今被寻回\n瞎眼今得看见"


def slow_request(seed: int, seconds: float = 290.0) -> tuple[np.ndarray, str]:
    """A request that takes the tiny model a second or more: minutes of audio, 2400 units of lyrics."""
    return noise(seconds, seed=seed), SLOW_LYRICS


def short_request() -> tuple[np.ndarray, str]:
    return speech(4.0), ZH


@dataclass
class Outcome:
    """What one request got: ``kind`` is "ok", "refused" (queue full) or "error"."""

    kind: str
    seconds: float
    lines: Lines | None = None
    status: str = ""
    message: str = ""
    finished_at: float = 0.0  # time.monotonic() when the answer came back

    def __repr__(self) -> str:
        detail = f"{len(self.lines.text)} lines" if self.lines else f"{self.status} {self.message[:160]!r}"
        return f"<{self.kind} in {self.seconds:.2f} s: {detail}>"


QUEUE_FULL = "Exceeds maximum queue size"


def _classify(exc: Exception, started: float) -> Outcome:
    finished = time.monotonic()
    if isinstance(exc, InferenceServerException):
        status, message = str(exc.status()), exc.message() or str(exc)
        refused = status in ("503", "StatusCode.UNAVAILABLE") and QUEUE_FULL in message
        return Outcome("refused" if refused else "error", finished - started, None, status, message, finished)
    return Outcome("error", finished - started, None, type(exc).__name__, str(exc), finished)


def new_http_client(url: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url, connection_timeout=CLIENT_TIMEOUT, network_timeout=CLIENT_TIMEOUT)


def call_http(client: httpclient.InferenceServerClient, audio, lyrics, language=None, headers=None,
              request_id: str = "") -> Outcome:
    started = time.monotonic()
    try:
        result = client.infer(MODEL, build_inputs(httpclient, audio, lyrics, language), headers=headers,
                              request_id=request_id)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome
        return _classify(exc, started)
    finished = time.monotonic()
    return Outcome("ok", finished - started, lines_of(result), finished_at=finished)


def call_grpc(client: grpcclient.InferenceServerClient, audio, lyrics, language=None, headers=None,
              request_id: str = "") -> Outcome:
    started = time.monotonic()
    try:
        result = client.infer(MODEL, build_inputs(grpcclient, audio, lyrics, language), headers=headers,
                              request_id=request_id, client_timeout=CLIENT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        return _classify(exc, started)
    finished = time.monotonic()
    return Outcome("ok", finished - started, lines_of(result), finished_at=finished)


def once_http(url: str, audio, lyrics, language=None, headers=None) -> Outcome:
    """One request on a fresh connection that is closed afterwards."""
    client = new_http_client(url)
    try:
        return call_http(client, audio, lyrics, language, headers)
    finally:
        client.close()


def once_grpc(url: str, audio, lyrics, language=None, headers=None) -> Outcome:
    client = grpcclient.InferenceServerClient(url)
    try:
        return call_grpc(client, audio, lyrics, language, headers)
    finally:
        client.close()


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(interval)  # polling interval of the condition above


# --- metrics ---------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(metrics_url: str) -> dict[tuple[str, frozenset], float]:
    """The Prometheus text on ``metrics_url`` as {(name, labels): value}."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            samples[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return samples


def scrape_until(metrics_url: str, settled, timeout: float = 15.0) -> dict:
    """Scrape until ``settled(samples)`` holds or ``timeout`` passes, and return the last scrape.

    Triton reports a batch's request statistics after it has sent the responses,
    so a scrape right after the last answer may lag; callers then assert on the result.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(metrics_url)
        if settled(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)  # polling interval of the condition above


def deltas(before: dict, after: dict, wanted: dict[str, tuple[str, dict]]) -> dict[str, float]:
    """{key: after - before} for each key -> (metric name, labels) in ``wanted``."""
    return {key: metric(after, name, **labels) - metric(before, name, **labels) for key, (name, labels) in wanted.items()}


def metric(samples: dict, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels`` (0 when absent)."""
    wanted = set(labels.items())
    found = [value for (sample, sample_labels), value in samples.items() if sample == name and wanted <= sample_labels]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else 0.0


# --- the Python backend stub ------------------------------------------------

def stub_process(server, model: str = "qwen3_aligner") -> psutil.Process:
    """The one Python backend stub of ``model`` (the server also runs silero_vad's); its command line names the model's folder."""
    stubs = [stub for stub in map(psutil.Process, server.stub_pids()) if stub.status() != psutil.STATUS_ZOMBIE]
    mine = [stub for stub in stubs if any(f"/{model}/" in part or part.endswith(f"/{model}") for part in stub.cmdline())]
    assert len(mine) == 1, f"expected one Python backend stub of {model}, found {[s.cmdline() for s in stubs]}"
    return mine[0]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def wait_until_busy(process: psutil.Process, since: float, timeout: float = 60.0, work: float = 0.3) -> None:
    """Wait until ``process`` has used ``work`` CPU seconds more than ``since``: it is executing a request."""
    wait_for(lambda: cpu_seconds(process) - since >= work, timeout, f"stub {process.pid} starts executing")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
