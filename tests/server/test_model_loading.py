"""Loading: a missing or broken model directory leaves the server up but not ready,
and a failure inside inference is a 500 logged at ERROR with its traceback."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sow_qwen3_tools.local_server import http_status, start_server
from support.audio import speech
from support.checkpoints import broken_copy, fails_inside_inference, rewrite_json
from support.infer import MODEL, align_http, build_inputs, http_client
from support.stopping import assert_clean_stop

pytestmark = pytest.mark.server  # starts the real tritonserver

BROKEN = {
    "missing": (lambda d: shutil.rmtree(d), "does not exist"),
    "no-weights": (lambda d: (d / "model.safetensors").unlink(), "is missing model.safetensors"),
    "garbage-config": (lambda d: (d / "config.json").write_text("{not json"), "unreadable config.json"),
    "not-an-aligner": (
        lambda d: rewrite_json(d / "config.json", lambda c: c["thinker_config"].update(model_type="qwen3_asr_thinker")),
        "not a forced aligner",
    ),
    "truncated-weights": (
        lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
        "could not load Qwen3-ForcedAligner from",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_model_dir_leaves_server_live_but_not_ready(tiny_model_dir, server_logs, tmp_path, case):
    breakage, problem = BROKEN[case]
    model_dir = broken_copy(tiny_model_dir, tmp_path, breakage)
    # No --exit-on-error=false here: serve.py passes it, so a failed load never ends the server.
    server = start_server(model_dir, server_logs, wait_ready=False)
    try:
        base = f"http://{server.http_url}"
        # Triton opens its endpoints only after the model load has been tried.
        assert http_status(f"{base}/v2/health/live") == 200
        assert http_status(f"{base}/v2/health/ready") == 400
        assert http_status(f"{base}/v2/models/{MODEL}/ready") == 400
        with pytest.raises(InferenceServerException):
            align_http(server.http_url, speech(2.0), "奇异恩典")
        failures = [line for line in server.log().splitlines() if "loading failed:" in line]
        assert failures and str(model_dir) in failures[0] and problem in failures[0], server.log()[-3000:]
    finally:
        assert_clean_stop(server)


def test_inference_failure_is_500_and_logged_with_traceback(tiny_model_dir, server_logs, tmp_path):
    """A checkpoint whose feature extractor disagrees with the encoder loads, then fails inside the model."""
    model_dir = broken_copy(tiny_model_dir, tmp_path, fails_inside_inference)
    server = start_server(model_dir, server_logs)
    try:
        client = http_client(server.http_url)
        with pytest.raises(InferenceServerException) as error:
            client.infer(MODEL, build_inputs(httpclient, speech(2.0), "奇异恩典"))
        client.close()
        assert error.value.status() == "500"
        assert error.value.message().startswith("alignment failed: RuntimeError")
        log = server.log()
        assert re.search(r"^E\d{4} .*alignment failed\\nTraceback \(most recent call last\)", log, re.M), log[-3000:]
        assert "engine.py" in log and server.is_ready()
    finally:
        assert_clean_stop(server)


# Checked as an unprivileged uid: root reads every file whatever its mode.
CHECK_AS_NOBODY = """
import os, sys
from pathlib import Path
from sow_aligner.access import permission_problem  # imported before the uid changes
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
print(permission_problem(Path(sys.argv[1])))
"""


@pytest.mark.parametrize("locked", ["folder", "weights", "parent", "none"])
def test_unreadable_checkpoint_is_reported_as_permission_denied(tiny_model_dir, locked):
    uid = 65534 if os.geteuid() == 0 else os.geteuid()
    base = Path(tempfile.mkdtemp(prefix="sow-qwen3-perm-"))
    try:
        parent = base / "mount"
        model = parent / "model"
        shutil.copytree(tiny_model_dir, model)
        for folder in (base, parent, model):
            folder.chmod(0o755)
        for file in model.iterdir():
            file.chmod(0o644)
        target = {"folder": model, "weights": model / "model.safetensors", "parent": parent, "none": None}[locked]
        if target is not None:
            target.chmod(0o700 if target.is_dir() else 0o600)
        done = subprocess.run([sys.executable, "-c", CHECK_AS_NOBODY, str(model)],
                              capture_output=True, text=True, timeout=60)
        reported = {"parent": model}.get(locked, target)
        expected = "None" if target is None else f"permission denied: {reported} is not readable by uid {uid}"
        assert done.stdout.strip() == expected, done.stderr[-2000:]
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("variable, value, reasons", [
    # The timestamp head (5000 classes of 80 ms) cannot time past 400 s: a longer pass is refused, saying why.
    ("SOW_QWEN3_WINDOW_SECONDS", "401", ("SOW_QWEN3_WINDOW_SECONDS) is '401'; expected at most 400 s",
                                         "timestamp head has 5000 classes of 80 ms")),
    # Songs may be raised up to 15 minutes (aligned in windows), no further.
    ("SOW_QWEN3_MAX_AUDIO_SECONDS", "901", ("SOW_QWEN3_MAX_AUDIO_SECONDS) is '901'; expected at most 900",)),
])
def test_limits_past_what_the_model_can_time_are_refused_at_load(tiny_model_dir, server_logs, variable, value, reasons):
    server = start_server(tiny_model_dir, server_logs, wait_ready=False, triton_args=("--exit-on-error=false",),
                          env={variable: value})
    try:
        assert http_status(f"http://{server.http_url}/v2/models/{MODEL}/ready") == 400
        failures = [line for line in server.log().splitlines() if "loading failed:" in line]
        assert failures, server.log()[-3000:]
        for reason in reasons:
            assert reason in failures[0]
    finally:
        assert_clean_stop(server)
