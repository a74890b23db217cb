"""scripts/serve.py builds the one tritonserver command line everything uses."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_server import launcher as serve


def options(**overrides) -> serve.ServeOptions:
    return serve.ServeOptions(model_dir="/m", **overrides)


def flag(argv: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def test_command_binds_ports_and_uses_the_wheel_backend():
    argv, env = serve.build_command(options(http_port=1, grpc_port=2, metrics_port=3, host="0.0.0.0"))
    assert Path(argv[0]).name == "tritonserver" and os.access(argv[0], os.X_OK)
    assert (flag(argv, "http-port"), flag(argv, "grpc-port"), flag(argv, "metrics-port")) == ("1", "2", "3")
    assert flag(argv, "http-address") == flag(argv, "grpc-address") == flag(argv, "metrics-address") == "0.0.0.0"
    assert flag(argv, "model-repository") == str(serve.CHECKOUT_REPOSITORY)
    backend = Path(flag(argv, "backend-directory")) / "python"
    assert (backend / "triton_python_backend_stub").resolve().exists()
    assert (backend / "libtriton_python.so").resolve().exists()
    assert "--disable-auto-complete-config" in argv
    # A model that fails to load leaves the server up and not ready (tests/test_model_loading.py).
    assert flag(argv, "exit-on-error") == "false" and flag(argv, "strict-readiness") == "true"
    # Explicit model control: the supervisor reloads a crashed model through the repository API.
    assert flag(argv, "model-control-mode") == "explicit"
    loaded = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--load-model=")]
    assert loaded == sorted(path.parent.name for path in serve.CHECKOUT_REPOSITORY.glob("*/config.pbtxt"))
    assert serve.MODEL_NAME in loaded and "silero_vad" in loaded
    assert env["SOW_QWEN3_MODEL_PATH"] == "/m"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(os.sys.executable).parent)


def test_host_and_model_repository_come_from_the_environment(monkeypatch, tmp_path):
    repository = tmp_path / "repository"
    (repository / serve.MODEL_NAME).mkdir(parents=True)
    config = (serve.CHECKOUT_REPOSITORY / serve.MODEL_NAME / "config.pbtxt").read_text()
    (repository / serve.MODEL_NAME / "config.pbtxt").write_text(config.replace('"300"', '"120"'))
    monkeypatch.setenv("SOW_QWEN3_HOST", "127.0.0.2")
    monkeypatch.setenv("SOW_QWEN3_MODEL_REPOSITORY", str(repository))
    monkeypatch.delenv("SOW_QWEN3_MAX_AUDIO_SECONDS", raising=False)
    parsed = serve.parse_args(["--model-dir", "/m"])
    argv, _ = serve.build_command(parsed)
    assert flag(argv, "http-address") == "127.0.0.2"
    assert flag(argv, "model-repository") == str(repository)
    assert parsed.max_audio_seconds == 120  # read from that repository's config.pbtxt
    assert serve.parse_args(["--host", "::1"]).host == "::1"


def test_a_missing_model_repository_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("SOW_QWEN3_MODEL_REPOSITORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        serve.parse_args([])
    message = str(exit_info.value.code)
    assert str(tmp_path) in message and "SOW_QWEN3_MODEL_REPOSITORY" in message and "qwen3_aligner" in message


def test_api_key_restricts_inference_and_repository_over_both_protocols(monkeypatch):
    monkeypatch.setenv("SOW_QWEN3_API_KEY", "s3cret")
    argv, env = serve.build_command(serve.parse_args(["--model-dir", "/m"]))
    restricted = "inference,model-repository,shared-memory,logging,trace:api-key=s3cret"
    assert flag(argv, "http-restricted-api") == restricted
    assert flag(argv, "grpc-restricted-protocol") == restricted
    assert "SOW_QWEN3_API_KEY" not in env


@pytest.mark.parametrize("key", ["", "disabled"])
def test_no_key_or_disabled_means_no_restriction(key):
    argv, _ = serve.build_command(options(api_key=key))
    assert not [arg for arg in argv if "restricted" in arg]


def test_require_api_key_refuses_to_start_without_one(monkeypatch, capsys):
    monkeypatch.delenv("SOW_QWEN3_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        serve.parse_args(["--require-api-key"])
    assert exit_info.value.code == 2
    assert "no API key" in capsys.readouterr().err
    assert serve.parse_args(["--require-api-key", "--api-key", "disabled"]).api_key == "disabled"


def test_extra_arguments_pass_through():
    parsed = serve.parse_args(["--model-dir", "/m", "--", "--exit-on-error=false", "--log-verbose=1"])
    argv, _ = serve.build_command(parsed)
    assert argv[-2:] == ["--exit-on-error=false", "--log-verbose=1"]


def test_overrides_render_a_linked_copy_of_the_repository(monkeypatch, tmp_path):
    monkeypatch.setattr(serve.tempfile, "tempdir", str(tmp_path))  # a fresh copy, not one an earlier run left
    monkeypatch.setenv("SOW_QWEN3_INSTANCE_COUNT", "3")
    monkeypatch.setenv("SOW_QWEN3_MAX_QUEUE", "5")
    monkeypatch.setenv("SOW_QWEN3_INSTANCE_KIND", "gpu")
    argv, _ = serve.build_command(serve.parse_args(["--model-dir", "/m"]))
    repository = Path(flag(argv, "model-repository"))
    assert repository != serve.CHECKOUT_REPOSITORY
    config = (repository / serve.MODEL_NAME / "config.pbtxt").read_text()
    assert re.search(r"instance_group\s*\[\s*\{\s*count:\s*3\s+kind:\s*KIND_GPU", config)
    assert re.search(r"max_queue_size:\s*5\b", config)
    assert (repository / serve.MODEL_NAME / "1").resolve() == (serve.CHECKOUT_REPOSITORY / serve.MODEL_NAME / "1")
    original = (serve.CHECKOUT_REPOSITORY / serve.MODEL_NAME / "config.pbtxt").read_text()
    # A GPU instance batches across requests: up to 32 per execute(), a 2 ms wait for a preferred batch.
    assert re.search(r"^max_batch_size: 32$", config, re.M)
    assert re.search(r"max_queue_delay_microseconds: 2000\n\s*preferred_batch_size: \[ 8, 16, 32 \]", config)
    parsed = text_format.Parse(config, model_config_pb2.ModelConfig())  # Triton's own schema
    assert (parsed.max_batch_size, list(parsed.dynamic_batching.preferred_batch_size),
            parsed.dynamic_batching.max_queue_delay_microseconds) == (32, [8, 16, 32], 2000)
    gpu_only = r"count: 3|KIND_GPU|max_queue_size: 5|max_batch_size: 32|: 2000\n\s*preferred_batch_size: \[[^]]*\]"
    assert re.sub(gpu_only, "", config) == re.sub(
        r"count: 1|KIND_CPU|max_queue_size: 32|max_batch_size: 8|: 0(?=\n)", "", original)
    # The other model of the repository is served unchanged beside it.
    assert (repository / "silero_vad").resolve() == serve.CHECKOUT_REPOSITORY / "silero_vad"


@pytest.mark.parametrize("argv,message", [
    (["--instance-count", "0"], "--instance-count must be at least 1"),
    (["--max-queue-size", "-3"], "--max-queue-size must be at least 1"),
])
def test_bad_counts_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        serve.parse_args(argv)
    assert message in capsys.readouterr().err


def test_http_body_limit_fits_a_clip_at_the_limit_plus_lyrics():
    assert serve.max_input_bytes(300) == 300 * SAMPLE_RATE * 4 + 2**20
    assert serve.max_input_bytes(60) < serve.max_input_bytes(300)


def test_body_limit_flag_only_where_the_server_has_it():
    argv, _ = serve.build_command(options())
    binary = Path(argv[0])
    has_flag = serve.supports_flag(binary, "--http-max-input-size")
    assert any(arg.startswith("--http-max-input-size=") for arg in argv) == has_flag
    assert serve.supports_flag(binary, "--http-restricted-api")


@pytest.mark.parametrize("host, base", [("0.0.0.0", "http://127.0.0.1:9"), ("::", "http://127.0.0.1:9"),
                                        ("10.1.2.3", "http://10.1.2.3:9"), ("::1", "http://[::1]:9")])
def test_supervisor_reaches_the_model_over_loopback_or_the_bound_address(host, base):
    endpoint = serve.model_endpoint(options(host=host, http_port=9))
    assert endpoint.base_url == base and endpoint.name == serve.MODEL_NAME
    assert endpoint.ready_url == f"{base}/v2/models/{serve.MODEL_NAME}/ready"


@pytest.mark.parametrize("key, headers", [("s3cret", {"api-key": "s3cret"}), ("", {}), ("disabled", {})])
def test_supervisor_sends_the_api_key_only_when_auth_is_on(key, headers):
    endpoint = serve.model_endpoint(options(api_key=key))
    assert endpoint.headers == headers
    assert endpoint.repository_url("unload").endswith(f"/v2/repository/models/{serve.MODEL_NAME}/unload")
    assert "s3cret" not in repr(endpoint)


def test_the_server_and_its_models_preload_tcmalloc_where_installed(monkeypatch):
    """scripts/bootstrap.sh installs Debian's libtcmalloc-minimal4 here, as the image does; a preload already set
    stays after it."""
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    _, env = serve.build_command(options())
    assert env["LD_PRELOAD"].split() == ["libtcmalloc_minimal.so.4", "libother.so"]
    monkeypatch.delenv("LD_PRELOAD")
    _, env = serve.build_command(options(allocator="system"))
    assert "LD_PRELOAD" not in env


def test_without_tcmalloc_the_server_says_so_and_runs_on_glibc(monkeypatch, capsys):
    # Stand-in for a machine without the library: it cannot be uninstalled for one test.
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(serve.ctypes.util, "find_library", lambda name: None)
    _, env = serve.build_command(options())
    assert "LD_PRELOAD" not in env
    assert "libtcmalloc-minimal4" in capsys.readouterr().err


def test_the_allocator_comes_from_the_environment_and_a_bad_one_is_named(monkeypatch, capsys):
    monkeypatch.setenv("SOW_QWEN3_ALLOCATOR", "system")
    assert serve.parse_args(["--model-dir", "/m"]).allocator == "system"
    monkeypatch.setenv("SOW_QWEN3_ALLOCATOR", "jemalloc")
    with pytest.raises(SystemExit):
        serve.parse_args(["--model-dir", "/m"])
    assert "SOW_QWEN3_ALLOCATOR" in capsys.readouterr().err
