"""The dtype each instance runs in is logged and exported as metrics (dtype=auto measures on CPU)."""
from __future__ import annotations

import re

import pytest
from ops_helpers import once_http, scrape, scrape_until

from sow_aligner.amx_attention import cpu_has_amx
from sow_qwen3_tools.local_server import start_server
from support.audio import speech
from support.stopping import assert_clean_stop, serving

pytestmark = pytest.mark.server  # needs the real tritonserver

LABELS = {("model", "qwen3_aligner"), ("version", "1")}


def samples_named(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name and LABELS <= labels}


@pytest.fixture(scope="module")
def auto_server(tiny_model_dir, server_logs):
    """A server with config.pbtxt's dtype, auto (the other test servers are pinned to float32, see conftest)."""
    yield from serving(tiny_model_dir, server_logs, {"SOW_QWEN3_DTYPE": "auto"})


def test_auto_on_cpu_runs_the_probe_and_exports_its_pick(auto_server):
    """dtype auto: both dtypes are timed and the faster (ties: the checkpoint's) is loaded.

    One request first: Triton 2.51 sometimes shows a gauge set at load as 0; the model sets it again per request.
    """
    triton_server = auto_server
    assert once_http(triton_server.http_url, speech(2.0), "奇异恩典").kind == "ok"
    samples = scrape_until(triton_server.metrics_url,
                           lambda s: list(samples_named(s, "sow_qwen3_dtype").values()) == [1.0])
    probe = {dict(labels)["dtype"]: value for labels, value in samples_named(samples, "sow_qwen3_dtype_probe_gflops").items()}
    assert set(probe) == {"float32", "bfloat16"} and all(value > 0 for value in probe.values()), probe
    chosen = samples_named(samples, "sow_qwen3_dtype")
    assert len(chosen) == 1 and list(chosen.values()) == [1.0], chosen
    labels = dict(next(iter(chosen)))
    assert labels["reason"] == "probe"
    # The tiny checkpoint is float32: bfloat16 wins only when more than 5% faster.
    expected = "bfloat16" if probe["bfloat16"] > probe["float32"] * 1.05 else "float32"
    assert labels["dtype"] == expected, probe
    line = re.search(r"dtype (\w+) \(probe\); probe (.*GFLOP/s); estimated peak", triton_server.log())
    assert line and line.group(1) == expected, triton_server.log()[-3000:]
    assert re.search(rf"loaded .* as {expected} ", triton_server.log())


def test_an_explicit_dtype_wins_without_a_probe(tiny_model_dir, server_logs):
    server = start_server(tiny_model_dir, server_logs, env={"SOW_QWEN3_DTYPE": "bfloat16"})
    try:
        samples = scrape(server.metrics_url)
        chosen = samples_named(samples, "sow_qwen3_dtype")
        assert [dict(labels) for labels in chosen] == [{**dict(LABELS), "dtype": "bfloat16", "reason": "setting"}]
        assert samples_named(samples, "sow_qwen3_dtype_probe_gflops") == {}
        assert "dtype bfloat16 (setting)" in server.log() and "(probe)" not in server.log()
        # CPU in bfloat16: the decoder is compiled inside the Triton stub (whose locale may be bare C), and on a
        # CPU with AMX its attention runs our kernel there (built by the stub, OpenMP on torch's libgomp); each
        # GELU of the audio front end runs inside its oneDNN convolution.
        assert "decoder compiled (torch.compile)" in server.log(), server.log()[-3000:]
        assert "(convolutions: GELU fused, " in server.log(), server.log()[-3000:]
        attention = "AMX kernel" if cpu_has_amx() else "PyTorch's"
        assert f"attention kernel: {attention}, " in server.log(), server.log()[-3000:]
        assert once_http(server.http_url, speech(2.0), "奇异恩典").kind == "ok"
    finally:
        assert_clean_stop(server)
