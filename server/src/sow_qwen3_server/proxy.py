"""``sow-qwen3-proxy``: nginx in front of tritonserver, with a cap on request bodies and optional TLS.

Renders the package's ``nginx.conf.template`` into a fresh temporary folder
(config, pid file and nginx's temp folders, so it runs as any user with a
read-only root) and replaces itself with nginx in the foreground. The same
``render`` is what the tests run the real nginx with.

Listens on 8080 (HTTP), 8081 (gRPC) and 8082 (metrics) and forwards to
Triton's 8000/8001/8002 on SOW_QWEN3_PROXY_UPSTREAM (default 127.0.0.1).
Bodies over SOW_QWEN3_MAX_BODY_SIZE bytes (default: just above a clip at the
model's length limit plus lyrics, ``launcher.max_input_bytes``) are refused
with HTTP 413 / gRPC RESOURCE_EXHAUSTED before they reach Triton. A request
Triton has not answered after SOW_QWEN3_PROXY_TIMEOUT seconds (default
3600, above the client's 900 s, so the client's own timeout is what ends a
long alignment) gets HTTP 504 / gRPC DEADLINE_EXCEEDED, saying so. With
SOW_QWEN3_TLS_CERT and SOW_QWEN3_TLS_KEY (PEM file paths) every listener
speaks TLS instead of plain text.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sow_qwen3_contract.tensors import AUDIO_BYTES_PER_SECOND

from .launcher import find_model_repository, max_audio_seconds, max_input_bytes

TEMPLATE = "nginx.conf.template"
SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
# Bytes of a request besides the audio: lyrics and the JSON/protobuf header (launcher.max_input_bytes).
REQUEST_OVERHEAD = 2**20
# Seconds nginx waits for Triton's answer: above the client's default timeout (900 s), so a long song
# queued behind others or aligned in many windows is ended by the client that waits for it, not here.
DEFAULT_UPSTREAM_TIMEOUT = 3600
CONNECT_TIMEOUT = 60  # nginx's proxy_connect_timeout / grpc_connect_timeout (its default); also answered 504


@dataclass(frozen=True)
class ProxySettings:
    """Where the proxy listens, where Triton is, how long it waits for Triton, the body cap and the TLS files."""

    max_body_size: int
    upstream_timeout: int = DEFAULT_UPSTREAM_TIMEOUT  # seconds
    upstream: str = "127.0.0.1"
    upstream_http_port: int = 8000
    upstream_grpc_port: int = 8001
    upstream_metrics_port: int = 8002
    listen_address: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    metrics_port: int = 8082
    tls_cert: str = ""
    tls_key: str = ""


def parse_size(text: str) -> int:
    """Bytes from ``12345``, ``512k``, ``20m`` or ``1g`` (binary multiples, as nginx reads them)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)\s*", text.lower())
    if not match or int(match[1]) == 0:
        raise ValueError(f"SOW_QWEN3_MAX_BODY_SIZE is {text!r}; expected a positive size such as 20971520, 512k or 20m")
    return int(match[1]) * SIZE_UNITS[match[2]]


def parse_timeout(text: str) -> int:
    """Whole seconds from ``600`` (nginx's timeouts have no fractions here)."""
    if not re.fullmatch(r"\s*\d+\s*", text) or int(text) == 0:
        raise ValueError(f"SOW_QWEN3_PROXY_TIMEOUT is {text!r}; expected whole seconds above 0, such as 3600")
    return int(text)


def too_large_message(max_body_size: int) -> str:
    """What a client whose request is over the cap reads (no quotes: it sits inside nginx and JSON strings)."""
    seconds = max(0, max_body_size - REQUEST_OVERHEAD) // AUDIO_BYTES_PER_SECOND
    return (f"request body too large: this service takes at most {max_body_size} bytes per request "
            f"(about {seconds} s of audio plus lyrics)")


def timed_out_message(upstream_timeout: int) -> str:
    """What a client whose request Triton did not answer in time reads (no quotes, as above)."""
    return (f"the aligner did not answer in time: the proxy waits {upstream_timeout} s for an answer "
            f"(SOW_QWEN3_PROXY_TIMEOUT) and {CONNECT_TIMEOUT} s to connect; it may still be aligning "
            "(a long song, or a long queue on a busy CPU)")


def render(settings: ProxySettings, runtime_dir: Path) -> str:
    """The nginx configuration for ``settings``, keeping its pid and temp files under ``runtime_dir``.

    TLS is on when ``settings`` names a certificate (and then also a key).
    """
    tls = ""
    if settings.tls_cert:
        tls = (f"        ssl_certificate {settings.tls_cert};\n"
               f"        ssl_certificate_key {settings.tls_key};\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;")
    values = {
        "runtime_dir": str(runtime_dir),
        "max_body_size": str(settings.max_body_size),
        "upstream_timeout": str(settings.upstream_timeout),
        "timed_out_message": timed_out_message(settings.upstream_timeout),
        "connect_timeout": str(CONNECT_TIMEOUT),
        "too_large_message": too_large_message(settings.max_body_size),
        "upstream": settings.upstream,
        "upstream_http_port": str(settings.upstream_http_port),
        "upstream_grpc_port": str(settings.upstream_grpc_port),
        "upstream_metrics_port": str(settings.upstream_metrics_port),
        "listen_address": f"[{settings.listen_address}]" if ":" in settings.listen_address else settings.listen_address,
        "http_port": str(settings.http_port),
        "grpc_port": str(settings.grpc_port),
        "metrics_port": str(settings.metrics_port),
        "ssl": " ssl" if tls else "",
        "tls": tls,
    }
    template = resources.files(__package__).joinpath(TEMPLATE).read_text()
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values[match[1]], template)


def nginx_binary() -> str:
    """The nginx executable (Debian puts it in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not found:
        raise SystemExit("sow-qwen3-proxy: nginx is not installed (Debian: apt-get install nginx-light)")
    return found


def prepare(settings: ProxySettings, runtime_dir: Path) -> list[str]:
    """Write the rendered configuration into ``runtime_dir``; return the nginx command that runs it."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    # nginx's workers (user nobody when started as root) create their temp folders in here.
    runtime_dir.chmod(0o755)
    config = runtime_dir / "nginx.conf"
    config.write_text(render(settings, runtime_dir))
    return [nginx_binary(), "-e", "stderr", "-p", str(runtime_dir), "-c", str(config)]


def default_max_body_size() -> int:
    """Just above a clip at the model's audio limit plus lyrics (the limit as the launcher reads it)."""
    repository = find_model_repository(os.environ.get("SOW_QWEN3_MODEL_REPOSITORY") or None)
    return max_input_bytes(max_audio_seconds(repository))


def parse_args(argv: list[str] | None = None) -> ProxySettings:
    env = os.environ
    parser = argparse.ArgumentParser(prog="sow-qwen3-proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default=env.get("SOW_QWEN3_PROXY_UPSTREAM") or "127.0.0.1",
                        help="Triton's host (env SOW_QWEN3_PROXY_UPSTREAM)")
    parser.add_argument("--upstream-http-port", type=int, default=8000)
    parser.add_argument("--upstream-grpc-port", type=int, default=8001)
    parser.add_argument("--upstream-metrics-port", type=int, default=8002)
    parser.add_argument("--listen-address", default="0.0.0.0")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--metrics-port", type=int, default=8082)
    parser.add_argument("--max-body-size", default=env.get("SOW_QWEN3_MAX_BODY_SIZE") or None,
                        help="largest request body, e.g. 20m (env SOW_QWEN3_MAX_BODY_SIZE; "
                             "default: a clip at the model's audio limit plus lyrics)")
    parser.add_argument("--upstream-timeout", default=env.get("SOW_QWEN3_PROXY_TIMEOUT") or None,
                        help="seconds to wait for Triton's answer before HTTP 504 / gRPC DEADLINE_EXCEEDED "
                             f"(env SOW_QWEN3_PROXY_TIMEOUT; default {DEFAULT_UPSTREAM_TIMEOUT})")
    parser.add_argument("--tls-cert", default=env.get("SOW_QWEN3_TLS_CERT", ""),
                        help="PEM certificate (chain); with --tls-key every listener speaks TLS (env SOW_QWEN3_TLS_CERT)")
    parser.add_argument("--tls-key", default=env.get("SOW_QWEN3_TLS_KEY", ""),
                        help="PEM private key (env SOW_QWEN3_TLS_KEY)")
    args = parser.parse_args(argv)
    try:
        args.max_body_size = parse_size(args.max_body_size) if args.max_body_size else default_max_body_size()
        args.upstream_timeout = parse_timeout(args.upstream_timeout) if args.upstream_timeout else DEFAULT_UPSTREAM_TIMEOUT
    except ValueError as error:
        parser.error(str(error))
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("TLS needs both SOW_QWEN3_TLS_CERT and SOW_QWEN3_TLS_KEY (PEM files), or neither")
    for path in filter(None, (args.tls_cert, args.tls_key)):
        if not os.access(path, os.R_OK):
            parser.error(f"cannot read {path} (TLS certificate or key): is it mounted and readable by uid {os.getuid()}?")
    return ProxySettings(**vars(args))


def main() -> None:
    settings = parse_args()
    runtime_dir = Path(tempfile.mkdtemp(prefix="sow-qwen3-proxy-"))
    argv = prepare(settings, runtime_dir)
    print(f"sow-qwen3-proxy: HTTP :{settings.http_port}, gRPC :{settings.grpc_port}, metrics :{settings.metrics_port}"
          f" -> {settings.upstream}:{settings.upstream_http_port}/{settings.upstream_grpc_port}/"
          f"{settings.upstream_metrics_port}; body cap {settings.max_body_size} bytes; "
          f"upstream timeout {settings.upstream_timeout} s; "
          f"TLS {'on' if settings.tls_cert else 'off'}", file=sys.stderr, flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
