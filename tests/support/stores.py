"""Fixtures of the client and end-to-end tests: the loopback stores they fetch audio from, a real S3 API
(moto's server mode) and plain HTTP, and the server that requires an API key.

Both bind 127.0.0.1 on a free port and run in this process on their own threads.
"""
from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from sow_qwen3 import Client, S3Settings
from sow_qwen3_tools.local_server import RunningServer, free_ports, start_server
from support.infer import API_KEY
from support.stopping import assert_clean_stop

BUCKET = "worship"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def keyed_server(tiny_model_dir: Path, server_logs: Path) -> Iterator[RunningServer]:
    """The real tritonserver on the tiny checkpoint, started by scripts/serve.py with an API key."""
    server = start_server(tiny_model_dir, server_logs, api_key=API_KEY)
    yield server
    assert_clean_stop(server)


@pytest.fixture()
def client(keyed_server: RunningServer, s3_store: S3Store) -> Client:
    """A client of ``keyed_server`` over HTTP, with the key and the S3 store's settings."""
    return Client(url=keyed_server.http_url, api_key=API_KEY, s3=s3_store.settings(), timeout=120)


@dataclass
class S3Store:
    """The moto S3 endpoint with authentication on, one bucket and one valid access key."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str = BUCKET

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def put(self, key: str, path: Path) -> str:
        """Upload ``path`` as ``key``; returns its s3:// URL."""
        self.client().upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def settings(self, **changes: str) -> S3Settings:
        values = dict(endpoint_url=self.endpoint_url, access_key_id=self.access_key_id,
                      secret_access_key=self.secret_access_key, bucket=self.bucket)
        values.update(changes)
        return S3Settings(**values)

    def env(self) -> dict[str, str]:
        """The SOW_QWEN3_R2_* variables that point the client at this store."""
        settings = self.settings()
        return {"SOW_QWEN3_R2_ENDPOINT_URL": settings.endpoint_url, "SOW_QWEN3_R2_ACCESS_KEY_ID": settings.access_key_id,
                "SOW_QWEN3_R2_SECRET_ACCESS_KEY": settings.secret_access_key, "SOW_QWEN3_R2_BUCKET": settings.bucket}


@pytest.fixture(scope="session")
def s3_store() -> Iterator[S3Store]:
    """moto's S3 server on loopback; after set-up it checks every request's signature against its IAM users."""
    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        setup = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="catalogue")
        iam.put_user_policy(UserName="catalogue", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="catalogue")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        # From here on, every request must be signed by a known key (moto's "reset-auth" switch).
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).close()
        yield S3Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()


@dataclass
class HttpFiles:
    """Files under ``root`` served over HTTP with Range support.

    ``hold(name)`` makes requests for /name wait until ``release(name)``;
    ``requested[name]`` is set when the first request for /name arrives;
    ``hits`` counts requests per name. Names starting with ``norange-`` are
    served whole whatever the Range header asks, like a server without ranges.
    """

    root: Path
    url: str = ""
    hits: Counter = field(default_factory=Counter)
    requested: dict[str, threading.Event] = field(default_factory=dict)
    gates: dict[str, threading.Event] = field(default_factory=dict)

    def add(self, path: Path, name: str | None = None) -> str:
        name = name or path.name
        (self.root / name).write_bytes(path.read_bytes())
        return f"{self.url}/{name}"

    def hold(self, name: str) -> threading.Event:
        self.gates[name] = threading.Event()
        self.requested[name] = threading.Event()
        return self.requested[name]

    def release(self, name: str) -> None:
        self.gates.pop(name).set()


RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@pytest.fixture(scope="session")
def http_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpFiles]:
    files = HttpFiles(tmp_path_factory.mktemp("http-files"))

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(files.root), **kwargs)

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            name = self.path.lstrip("/").split("?")[0]
            files.hits[name] += 1
            if name in files.requested:
                files.requested[name].set()
            gate = files.gates.get(name)
            if gate is not None:
                gate.wait()
            path = files.root / name
            match = RANGE.match(self.headers.get("Range", ""))
            if not path.is_file() or match is None or name.startswith("norange-"):
                return super().do_GET()
            data = path.read_bytes()
            start = int(match.group(1))
            end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            self.wfile.write(data[start:end + 1])

    server = ThreadingHTTPServer(("127.0.0.1", free_ports(1)[0]), Handler)
    server.daemon_threads = True
    files.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield files
    for gate in list(files.gates.values()):
        gate.set()
    server.shutdown()
    server.server_close()
