"""The nginx front proxy (sow-qwen3-proxy): the real nginx in front of the real tritonserver.

A body over the cap is refused with HTTP 413 / gRPC RESOURCE_EXHAUSTED before
it reaches Triton (Triton's request count moves only by the requests that
pass); everything else, health and the API key included, passes through over
HTTP and gRPC; TLS turns on with a certificate and key; the client maps the
refusal to bad input (CLI exit 3); an answer that takes longer than the
proxy's timeout gets HTTP 504 / gRPC DEADLINE_EXCEEDED, saying so.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sow_qwen3_server import proxy
from sow_qwen3_server.launcher import max_input_bytes
from sow_qwen3_tools.local_server import http_status, start_server
from support.audio import speech, write_clip
from support.infer import MODEL, align_grpc, align_http, answer_of, build_inputs, starts, texts
from support.proxy import Upstream, start_proxy
from support.stopping import assert_clean_stop

pytestmark = pytest.mark.server  # needs the real tritonserver and nginx

KEY = "proxy-test-key-5f1e"
CAP = 512 * 1024  # bytes: a 3 s clip (192 kB) passes, a 10 s clip (640 kB) does not
LYRICS = "奇异恩典 何等甘甜\n我罪已得赦免"
SOW_QWEN3 = str(Path(sys.executable).parent / "sow-qwen3")


@pytest.fixture(scope="module")
def keyed_triton(tiny_model_dir, server_logs):
    server = start_server(tiny_model_dir, server_logs, api_key=KEY)
    yield server
    assert_clean_stop(server)


@pytest.fixture(scope="module")
def capped_proxy(keyed_triton, server_logs):
    """The proxy with a small cap in front of ``keyed_triton``; it must stop cleanly (exit 0)."""
    running = start_proxy(keyed_triton, server_logs, env={"SOW_QWEN3_MAX_BODY_SIZE": "512k"})
    yield running
    assert running.stop() == 0, running.log()[-3000:]


def requests_seen(server) -> int:
    """Requests that reached the model, by Triton's own statistics (successes and failures)."""
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{MODEL}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"][0]["inference_stats"]
    return int(stats["success"]["count"]) + int(stats["fail"]["count"])


def wait_for_count(server, expected: int, timeout: float = 15.0) -> int:
    """Triton's count once it reaches ``expected`` (statistics trail the response a little), or the last seen."""
    deadline = time.monotonic() + timeout
    while (seen := requests_seen(server)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)  # polling interval of the condition above
    return seen


def test_health_metrics_and_alignment_pass_through_over_http_and_grpc(keyed_triton, capped_proxy):
    base = f"http://{capped_proxy.url('http')}"
    assert http_status(f"{base}/v2/health/ready") == 200
    assert http_status(f"{base}/v2/models/{MODEL}/ready") == 200
    grpc = grpcclient.InferenceServerClient(capped_proxy.url("grpc"))
    try:
        assert grpc.is_server_ready() and grpc.is_model_ready(MODEL)
    finally:
        grpc.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{capped_proxy.ports['metrics']}/metrics", timeout=10) as response:
        assert "sow_qwen3_alignments_total" in response.read().decode()

    clip, key = speech(3.0), {"api-key": KEY}
    direct = align_http(keyed_triton.http_url, clip, LYRICS, "Chinese", headers=key)
    assert len(set(starts(direct))) == 2  # the tiny model's times vary, so equality below means something
    assert align_http(capped_proxy.url("http"), clip, LYRICS, "Chinese", headers=key) == direct
    grpc_key = {"triton-grpc-protocol-api-key": KEY}
    assert align_grpc(capped_proxy.url("grpc"), clip, LYRICS, "Chinese", headers=grpc_key) == direct
    # Authentication stays Triton's: the proxy passes the refusal through.
    with pytest.raises(InferenceServerException) as refused:
        align_http(capped_proxy.url("http"), clip, LYRICS, "Chinese")
    assert refused.value.status() == "403"


def test_an_oversized_body_is_refused_before_it_reaches_triton(keyed_triton, capped_proxy):
    big, small, key = speech(10.0), speech(3.0), {"api-key": KEY}
    assert big.nbytes > CAP > small.nbytes
    before = wait_for_count(keyed_triton, 0)

    http = httpclient.InferenceServerClient(capped_proxy.url("http"), network_timeout=60)
    try:
        with pytest.raises(InferenceServerException) as over_http:
            http.infer(MODEL, build_inputs(httpclient, big, LYRICS), headers=key)
    finally:
        http.close()
    assert over_http.value.status() == "413"
    assert over_http.value.message() == proxy.too_large_message(CAP)

    grpc = grpcclient.InferenceServerClient(capped_proxy.url("grpc"))
    try:
        with pytest.raises(InferenceServerException) as over_grpc:
            grpc.infer(MODEL, build_inputs(grpcclient, big, LYRICS), headers={"triton-grpc-protocol-api-key": KEY})
    finally:
        grpc.close()
    assert over_grpc.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert proxy.too_large_message(CAP) in over_grpc.value.message()

    # One request that passes: the count moves by exactly that one, not by the two refused ones.
    align_http(capped_proxy.url("http"), small, LYRICS, headers=key)
    assert wait_for_count(keyed_triton, before + 1) == before + 1
    # The same big request sent to Triton directly does reach the model (the refusal was the proxy's).
    align_http(keyed_triton.http_url, big, LYRICS, headers=key)
    assert wait_for_count(keyed_triton, before + 2) == before + 2


def test_the_default_cap_admits_a_clip_at_the_audio_limit_and_refuses_more(keyed_triton, server_logs):
    running = start_proxy(keyed_triton, server_logs)
    try:
        limit = max_input_bytes(300)
        assert f"body cap {limit} bytes" in running.log()
        key = {"api-key": KEY}
        lines = align_http(running.url("http"), np.tile(speech(20.0), 15), LYRICS, headers=key)
        assert texts(lines) == LYRICS.splitlines()
        # 20 s more audio than the model takes (1.28 MB) is over the cap: the proxy answers, not the model (400).
        with pytest.raises(InferenceServerException) as over:
            align_http(running.url("http"), np.tile(speech(20.0), 16), LYRICS, headers=key)
        assert over.value.status() == "413"
    finally:
        assert running.stop() == 0, running.log()[-3000:]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_cli_reports_a_refused_body_as_bad_input(capped_proxy, tmp_path, protocol):
    song = write_clip(tmp_path / "song.wav", speech(10.0))
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS, encoding="utf-8")
    url = capped_proxy.url(protocol)
    env = {name: value for name, value in os.environ.items() if not name.startswith("SOW_QWEN3_")}
    done = subprocess.run([SOW_QWEN3, "align", str(song), str(lyrics), "--url", url, "--protocol", protocol,
                           "--api-key", KEY], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "request body too large" in done.stderr and "Traceback" not in done.stderr


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made by openssl."""
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_tls_on_every_listener_with_a_certificate_and_key(keyed_triton, server_logs, tmp_path):
    cert, key = make_certificate(tmp_path)
    running = start_proxy(keyed_triton, server_logs,
                          env={"SOW_QWEN3_TLS_CERT": str(cert), "SOW_QWEN3_TLS_KEY": str(key)})
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        for port, path in ((running.ports["http"], "/v2/health/ready"), (running.ports["metrics"], "/metrics")):
            with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=trusted, timeout=10) as response:
                assert response.status == 200
        assert http_status(f"http://{running.url('http')}/v2/health/ready") == 400  # plain HTTP to a TLS port
        grpc = grpcclient.InferenceServerClient(running.url("grpc"), ssl=True, root_certificates=str(cert))
        try:
            result = grpc.infer(MODEL, build_inputs(grpcclient, speech(3.0), LYRICS),
                                headers={"triton-grpc-protocol-api-key": KEY})
        finally:
            grpc.close()
        assert texts(answer_of(result)) == LYRICS.splitlines()
    finally:
        assert running.stop() == 0, running.log()[-3000:]


@pytest.fixture
def silent_upstream():
    """Loopback ports that accept connections (the kernel's backlog) and never answer.

    A stand-in for an alignment longer than the proxy's timeout: a real one
    would take minutes of the tiny model's time per test, the timeout being
    whole seconds at least.
    """
    listeners = [socket.create_server(("127.0.0.1", 0), backlog=16) for _ in range(3)]
    yield Upstream(*(listener.getsockname()[1] for listener in listeners))
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_answer_slower_than_the_proxy_timeout_is_504_or_deadline_exceeded(silent_upstream, server_logs, tmp_path,
                                                                             protocol):
    running = start_proxy(silent_upstream, server_logs, env={"SOW_QWEN3_PROXY_TIMEOUT": "2"})
    try:
        song = write_clip(tmp_path / "song.wav", speech(3.0))
        lyrics = tmp_path / "lyrics.txt"
        lyrics.write_text(LYRICS, encoding="utf-8")
        env = {name: value for name, value in os.environ.items() if not name.startswith("SOW_QWEN3_")}
        started = time.monotonic()
        done = subprocess.run([SOW_QWEN3, "align", str(song), str(lyrics), "--url", running.url(protocol),
                               "--protocol", protocol, "--timeout", "60"],
                              env=env, capture_output=True, text=True, timeout=120)
        waited = time.monotonic() - started
        module = httpclient if protocol == "http" else grpcclient
        client = module.InferenceServerClient(running.url(protocol))
        try:
            with pytest.raises(InferenceServerException) as caught:
                client.infer(MODEL, build_inputs(module, speech(3.0), LYRICS))
        finally:
            client.close()
    finally:
        assert running.stop() == 0, running.log()[-3000:]
    assert done.returncode == 5, done.stderr  # server unavailable: try again later
    assert "did not answer in time: the proxy waits 2 s for an answer (SOW_QWEN3_PROXY_TIMEOUT)" in done.stderr, \
        done.stderr
    assert caught.value.status() == ("504" if protocol == "http" else "StatusCode.DEADLINE_EXCEEDED")
    assert "the proxy waits 2 s for an answer" in caught.value.message()
    assert 2 <= waited < 60, "the proxy's timeout ended the request, not the client's"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("env,message", [
    ({"SOW_QWEN3_MAX_BODY_SIZE": "lots"}, "SOW_QWEN3_MAX_BODY_SIZE is 'lots'"),
    ({"SOW_QWEN3_PROXY_TIMEOUT": "1.5"}, "SOW_QWEN3_PROXY_TIMEOUT is '1.5'"),
    ({"SOW_QWEN3_PROXY_TIMEOUT": "0"}, "SOW_QWEN3_PROXY_TIMEOUT is '0'"),
    ({"SOW_QWEN3_TLS_CERT": "/etc/hostname"}, "TLS needs both SOW_QWEN3_TLS_CERT and SOW_QWEN3_TLS_KEY"),
    ({"SOW_QWEN3_TLS_CERT": "/nonexistent.crt", "SOW_QWEN3_TLS_KEY": "/nonexistent.key"}, "cannot read /nonexistent.crt"),
])
def test_bad_settings_are_named(monkeypatch, capsys, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        proxy.parse_args([])
    assert message in capsys.readouterr().err


def test_timeout_settings(monkeypatch):
    monkeypatch.delenv("SOW_QWEN3_PROXY_TIMEOUT", raising=False)
    assert proxy.parse_args([]).upstream_timeout == proxy.DEFAULT_UPSTREAM_TIMEOUT
    monkeypatch.setenv("SOW_QWEN3_PROXY_TIMEOUT", "7200")
    assert proxy.parse_args([]).upstream_timeout == 7200
    assert proxy.parse_args(["--upstream-timeout", "30"]).upstream_timeout == 30


def test_cap_settings(monkeypatch):
    monkeypatch.delenv("SOW_QWEN3_MAX_BODY_SIZE", raising=False)
    monkeypatch.delenv("SOW_QWEN3_MAX_AUDIO_SECONDS", raising=False)
    assert proxy.parse_args([]).max_body_size == max_input_bytes(300)  # config.pbtxt's max_audio_seconds
    monkeypatch.setenv("SOW_QWEN3_MAX_AUDIO_SECONDS", "60")
    assert proxy.parse_args([]).max_body_size == max_input_bytes(60)
    monkeypatch.setenv("SOW_QWEN3_MAX_BODY_SIZE", "20m")
    assert proxy.parse_args([]).max_body_size == 20 * 2**20
    assert proxy.parse_args(["--max-body-size", "12345"]).max_body_size == 12345
