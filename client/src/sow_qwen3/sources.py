"""Audio sources: a local path, an ``http(s)://`` URL or ``s3://bucket/key`` (Cloudflare R2 or any S3 store).

``fetched_audio`` yields a local file for any of them. For remote objects it
checks, in this order and before downloading the whole object:

1. the object's size (S3 HEAD, or an HTTP one-byte ranged GET) against ``max_bytes``;
2. the duration its headers state (``duration.header_duration``, a few small
   ranged reads) against ``max_seconds``;

then streams the object to a temporary file, which is removed afterwards.
"""
from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from .audio import too_long
from .duration import HeaderDuration, RangeReader, header_duration
from .errors import AuthError, BadInputError, ServerUnavailableError
from .settings import S3Settings

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    """A source made local: ``path`` to decode, and what the early checks saw."""

    path: Path
    size: int | None
    header: HeaderDuration | None = None
    header_bytes: int = 0  # bytes read for the header check (0 for local files)


class RemoteObject(Protocol):
    name: str

    def size(self) -> int | None: ...
    def fetch(self, start: int, end: int) -> bytes: ...
    def download(self, out: BinaryIO, max_bytes: int) -> int: ...


class _NoRanges(Exception):
    """The server answered a ranged GET with the whole object."""


def _too_large(name: str, size: int, max_bytes: int) -> BadInputError:
    return BadInputError(f"{name} is {size} bytes; the limit is {max_bytes} bytes")


def _copy_limited(chunks: Iterator[bytes], out: BinaryIO, name: str, max_bytes: int) -> int:
    written = 0
    for chunk in chunks:
        written += len(chunk)
        if written > max_bytes:
            raise _too_large(name, written, max_bytes)
        out.write(chunk)
    return written


class S3Object:
    """One object in an S3-compatible store, read with boto3."""

    def __init__(self, source: str, settings: S3Settings, timeout: float) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        parsed = urllib.parse.urlparse(source)
        self.bucket = parsed.netloc or settings.bucket
        self.key = parsed.path.lstrip("/")
        if not self.bucket or not self.key:
            raise BadInputError(f"{source}: expected s3://bucket/key (or s3:///key with SOW_QWEN3_R2_BUCKET set)")
        self.name = f"s3://{self.bucket}/{self.key}"
        session = boto3.Session(aws_access_key_id=settings.access_key_id,
                                aws_secret_access_key=settings.secret_access_key)
        # No credentials anywhere (settings, AWS_* variables, profiles): read a public bucket anonymously.
        self.anonymous = session.get_credentials() is None
        self.client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region or ("auto" if settings.endpoint_url else None),
            config=Config(connect_timeout=min(timeout, 10), read_timeout=timeout,
                          signature_version=UNSIGNED if self.anonymous else "s3v4",
                          retries={"max_attempts": 3, "mode": "standard"}),
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = f"{code or status}: {error.get('Message') or exc}"
            if code in ("404", "NoSuchKey", "NotFound"):
                raise BadInputError(f"{self.name} does not exist") from None
            if code == "NoSuchBucket":
                raise BadInputError(f"{self.name}: bucket {self.bucket!r} does not exist") from None
            if status in (401, 403) or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                if self.anonymous:
                    raise AuthError(f"{self.name}: the storage refused anonymous access ({detail}); set "
                                    "SOW_QWEN3_R2_ACCESS_KEY_ID and SOW_QWEN3_R2_SECRET_ACCESS_KEY") from None
                raise AuthError(f"{self.name}: the storage refused the credentials ({detail})") from None
            if status is not None and status >= 500:
                raise ServerUnavailableError(f"{self.name}: the storage failed ({detail})") from None
            raise BadInputError(f"{self.name}: {detail}") from None
        except EndpointConnectionError as exc:
            raise ServerUnavailableError(f"{self.name}: cannot reach the storage endpoint ({exc})") from None
        except BotoCoreError as exc:
            raise ServerUnavailableError(f"{self.name}: storage error ({exc})") from None

    def size(self) -> int | None:
        with self._errors():
            return int(self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])

    def fetch(self, start: int, end: int) -> bytes:
        with self._errors():
            return self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end}")["Body"].read()

    def download(self, out: BinaryIO, max_bytes: int) -> int:
        with self._errors():
            body = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"]
            try:
                return _copy_limited(body.iter_chunks(CHUNK_BYTES), out, self.name, max_bytes)
            finally:
                body.close()


class HttpObject:
    """One object behind an http(s) URL, read with the standard library."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        parsed = urllib.parse.urlparse(url)
        self.name = parsed._replace(query="", fragment="").geturl()  # a presigned query string is a secret
        self.timeout = timeout

    def _open(self, headers: dict[str, str] | None = None):
        request = urllib.request.Request(self.url, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410):
                raise BadInputError(f"{self.name} does not exist (HTTP {exc.code})") from None
            if exc.code in (401, 403):
                raise AuthError(f"{self.name}: access refused (HTTP {exc.code})") from None
            if exc.code >= 500:
                raise ServerUnavailableError(f"{self.name}: the audio server failed (HTTP {exc.code})") from None
            raise BadInputError(f"{self.name}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnavailableError(f"{self.name}: cannot download ({reason})") from None

    def size(self) -> int | None:
        """From a one-byte ranged GET (some servers refuse HEAD): Content-Range, else Content-Length."""
        with self._open(headers={"Range": "bytes=0-0"}) as response:
            total = (response.headers.get("Content-Range") or "").rpartition("/")[2]
            length = total if response.status == 206 else response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None

    def fetch(self, start: int, end: int) -> bytes:
        with self._open(headers={"Range": f"bytes={start}-{end}"}) as response:
            if response.status != 206:
                raise _NoRanges
            return response.read(end - start + 1)

    def download(self, out: BinaryIO, max_bytes: int) -> int:
        with self._open() as response:
            return _copy_limited(iter(lambda: response.read(CHUNK_BYTES), b""), out, self.name, max_bytes)


def early_duration(remote: RemoteObject, size: int, max_seconds: float) -> tuple[HeaderDuration | None, int]:
    """Refuse ``remote`` if its headers say it is longer than ``max_seconds``.

    Returns what the headers said (None when they do not say) and the bytes read.
    """
    reader = RangeReader(remote.fetch, size)
    try:
        found = header_duration(reader)
    except _NoRanges:
        return None, reader.fetched
    if found is not None and found.longer_than(max_seconds):
        error = too_long(found.seconds, max_seconds, remote.name, found if found.at_least else None)
        error.args = (f"{error.args[0]} (from its {found.format} header: read {reader.fetched} of {size} bytes)",)
        raise error
    return found, reader.fetched


def remote_object(source: str, s3: S3Settings, timeout: float) -> RemoteObject | None:
    """The remote object ``source`` names, or None for a local path."""
    scheme = urllib.parse.urlparse(source).scheme.lower()
    if scheme == "s3":
        return S3Object(source, s3, timeout)
    if scheme in ("http", "https"):
        return HttpObject(source, timeout)
    return None


@contextmanager
def fetched_audio(source: str | Path, *, s3: S3Settings, max_bytes: int, max_seconds: float,
                  timeout: float) -> Iterator[Fetched]:
    """A local file holding ``source``'s audio, after the size and header-duration checks.

    Raises BadInputError (missing, too large, too long), AuthError (credentials
    refused) or ServerUnavailableError (storage unreachable).
    """
    remote = None if isinstance(source, Path) else remote_object(source, s3, timeout)
    if remote is None:
        path = Path(source.removeprefix("file://") if isinstance(source, str) else source)
        if not path.is_file():
            raise BadInputError(f"{path} does not exist or is not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(str(path), size, max_bytes)
        yield Fetched(path, size)
        return
    size = remote.size()
    header, header_bytes = None, 0
    if size is not None:
        if size > max_bytes:
            raise _too_large(remote.name, size, max_bytes)
        header, header_bytes = early_duration(remote, size, max_seconds)
    folder = tempfile.mkdtemp(prefix="sow-qwen3-")
    try:
        path = Path(folder) / (Path(urllib.parse.urlparse(source).path).name or "audio")
        with open(path, "wb") as out:
            size = remote.download(out, max_bytes)
        yield Fetched(path, size, header, header_bytes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
