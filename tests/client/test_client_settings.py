"""Client settings: arguments, SOW_QWEN3_* variables and their defaults."""
from __future__ import annotations

import pytest

from sow_qwen3 import Client, S3Settings
from sow_qwen3.client import server_address


@pytest.mark.parametrize("url, expected", [
    ("127.0.0.1:8000", ("127.0.0.1:8000", None, False)),
    ("http://aligner.internal:8000/", ("aligner.internal:8000", "http", False)),
    ("HTTPS://aligner.example.org", ("aligner.example.org", "http", True)),
    ("grpc://127.0.0.1:8001", ("127.0.0.1:8001", "grpc", False)),
])
def test_server_address(url, expected):
    assert server_address(url) == expected


def test_a_server_url_with_another_scheme_is_refused():
    with pytest.raises(ValueError, match="server URL must be host:port"):
        server_address("ftp://127.0.0.1:8000")


def test_arguments_win_over_the_environment_and_defaults_fill_the_rest(monkeypatch):
    for name in ("TRITON_URL", "PROTOCOL", "API_KEY", "TIMEOUT", "MAX_AUDIO_SECONDS", "MAX_DOWNLOAD_BYTES"):
        monkeypatch.delenv(f"SOW_QWEN3_{name}", raising=False)
    default = Client()
    assert (default.url, default.protocol, default.api_key, default.timeout, default.max_audio_seconds) == (
        "127.0.0.1:8000", "http", None, 900.0, 300.0)
    monkeypatch.setenv("SOW_QWEN3_TRITON_URL", "10.0.0.5:8000")
    monkeypatch.setenv("SOW_QWEN3_API_KEY", "from-env")
    monkeypatch.setenv("SOW_QWEN3_PROTOCOL", "GRPC")
    monkeypatch.setenv("SOW_QWEN3_TIMEOUT", "30")
    from_env = Client()
    assert (from_env.url, from_env.protocol, from_env.api_key, from_env.timeout) == ("10.0.0.5:8000", "grpc",
                                                                                    "from-env", 30.0)
    given = Client(url="h:1", protocol="http", api_key="given", timeout=5)
    assert (given.url, given.protocol, given.api_key, given.timeout) == ("h:1", "http", "given", 5)
    assert "given" not in repr(given) and "from-env" not in repr(from_env)


@pytest.mark.parametrize("url, protocol, expected", [
    ("grpc://h:8001", None, ("h:8001", "grpc", False)),
    ("grpc://h:8001", "GRPC", ("h:8001", "grpc", False)),
    ("http://h:8000", None, ("h:8000", "http", False)),
    ("https://h", None, ("h", "http", True)),
    ("https://h", "http", ("h", "http", True)),
    ("h:8001", "grpc", ("h:8001", "grpc", False)),
    ("h:8000", None, ("h:8000", "http", False)),
])
def test_the_url_scheme_chooses_the_protocol(monkeypatch, url, protocol, expected):
    monkeypatch.delenv("SOW_QWEN3_PROTOCOL", raising=False)
    client = Client(url=url, protocol=protocol)
    assert (client.url, client.protocol, client._ssl) == expected


@pytest.mark.parametrize("url, protocol", [("grpc://h:8001", "http"), ("http://h:8000", "grpc"), ("https://h", "grpc")])
def test_a_scheme_that_contradicts_the_protocol_is_refused(monkeypatch, url, protocol):
    monkeypatch.delenv("SOW_QWEN3_PROTOCOL", raising=False)
    with pytest.raises(ValueError, match=f"means the .* protocol, but {protocol} was asked for"):
        Client(url=url, protocol=protocol)
    monkeypatch.setenv("SOW_QWEN3_PROTOCOL", protocol)
    with pytest.raises(ValueError, match="SOW_QWEN3_PROTOCOL"):
        Client(url=url)


def test_storage_settings_come_from_the_r2_variables_and_hide_the_secret(monkeypatch):
    env = {"SOW_QWEN3_R2_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com", "SOW_QWEN3_R2_ACCESS_KEY_ID": "AK",
           "SOW_QWEN3_R2_SECRET_ACCESS_KEY": "very-secret", "SOW_QWEN3_R2_BUCKET": "worship"}
    settings = S3Settings.from_env(env)
    assert settings == S3Settings("https://acct.r2.cloudflarestorage.com", "AK", "very-secret", "worship")
    assert "very-secret" not in repr(settings) and "very-secret" not in repr(Client(s3=settings))


@pytest.mark.parametrize("value, message", [("soon", "is not a number"), ("-1", "must be positive")])
def test_a_bad_number_in_the_environment_names_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("SOW_QWEN3_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"SOW_QWEN3_TIMEOUT.*{message}"):
        Client()


def test_the_audio_limit_stops_at_the_servers_ceiling(monkeypatch):
    # MAX_AUDIO_SECONDS means one thing: a limit, which no server raises past MAX_AUDIO_SECONDS_CEILING.
    from sow_qwen3_contract.limits import MAX_AUDIO_SECONDS_CEILING

    assert Client(max_audio_seconds=MAX_AUDIO_SECONDS_CEILING).max_audio_seconds == MAX_AUDIO_SECONDS_CEILING
    monkeypatch.setenv("SOW_QWEN3_MAX_AUDIO_SECONDS", str(MAX_AUDIO_SECONDS_CEILING + 1))
    with pytest.raises(ValueError, match="SOW_QWEN3_MAX_AUDIO_SECONDS.*901 s; no server aligns more than 900 s"):
        Client()
