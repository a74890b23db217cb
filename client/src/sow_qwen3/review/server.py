"""The review page's local HTTP server: the page itself and its JSON API (see README, "Fix what it flags").

    GET  /                              the page (static/index.html, review.css, review.js)
    GET  /api/songs                     [{"name", "verdict", "flagged_lines", "reviewed", "loaded", "error"}], worst first
    GET  /api/songs/NAME                {"name", "duration_seconds", "verdict", "voiced", "lines": [...], ...}
    GET  /api/songs/NAME/envelope       {"seconds_per_bin", "peaks"}
    GET  /api/songs/NAME/audio          the audio, with Range requests
    PUT  /api/songs/NAME                {"lines": [{"index", "start"[, "end"]}]}: check, save, answer as GET
    POST /api/songs/NAME/judge          the same body: judged as GET shows it, nothing saved
    POST /api/songs/NAME/realign        {"first", "last"[, "lines"]}: the proposal, nothing saved

Security: every API call needs the run's token (``?token=`` or ``Authorization:
Bearer``; 403 without it); a request whose Host header is not this server's
own address is refused (403, against DNS rebinding); request bodies are capped
at MAX_BODY_BYTES; songs are reached only by the catalogue's names; the page's
files are a fixed set read from the package, never a path from the request.
Errors are JSON ``{"error": message}``.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from .catalogue import BadRequest, Catalogue, SongUnavailable, UnknownSong

log = logging.getLogger("sow_qwen3.review")

MAX_BODY_BYTES = 1024 * 1024
CHUNK_BYTES = 256 * 1024
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/review.css": ("review.css", "text/css; charset=utf-8"),
          "/review.js": ("review.js", "text/javascript; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SONG_PATH = re.compile(r"^/api/songs/([^/]+)(?:/(audio|envelope|judge|realign))?$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ReviewServer(ThreadingHTTPServer):
    """The server of one review run: its catalogue, its token and the Host values it answers to.

    ``port`` 0 picks a free one; ``url`` is the page's address with the token.
    """

    daemon_threads = True

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 0) -> None:
        self.address_family = _family(host)
        super().__init__((host, port), ReviewHandler)
        self.catalogue = catalogue
        self.token = secrets.token_urlsafe(24)
        self.port = self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.hosts = {f"{shown}:{self.port}"}
        if is_loopback(host):
            self.hosts |= {f"localhost:{self.port}", f"127.0.0.1:{self.port}", f"[::1]:{self.port}"}
        self.url = f"http://{shown}:{self.port}/?token={self.token}"

    def authorised(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_address(host: str) -> str:
    """``host`` as ``review --host`` takes it; ValueError for an address that stands for every address
    (0.0.0.0, ::): the Host check trusts requests for the one address the server was given."""
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host  # a name, such as localhost
    if unspecified:
        raise ValueError(f"{host} listens on every address, but the page trusts only requests for the address "
                         "it was given: name one address of this machine (its LAN address, say)")
    return host


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") reaches only this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ReviewHandler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"
    server_version = "sow-qwen3-review"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    # ------------------------------------------------------------------ dispatch
    def _handle(self, method: str) -> None:
        self._body_read = False
        try:
            if self.headers.get("Host", "") not in self.server.hosts:
                raise HttpError(HTTPStatus.FORBIDDEN, "refused: the Host header is not this server's address")
            url = urllib.parse.urlsplit(self.path)
            if url.path in STATIC and method in ("GET", "HEAD"):
                self._static(*STATIC[url.path], head=method == "HEAD")
                return
            if not url.path.startswith("/api/"):
                raise HttpError(HTTPStatus.NOT_FOUND, f"no page {url.path}")
            self._check_token(urllib.parse.parse_qs(url.query).get("token", [""])[0])
            self._api(method, url.path)
        except HttpError as exc:
            self._discard_body()
            self._json({"error": str(exc)}, exc.status)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the browser went away (a seek cancels a media request)
        except Exception as exc:  # a bug: say what in the answer and the log, keep serving
            log.exception("review request %s %s failed", method, self.path)
            self._json({"error": f"internal error: {type(exc).__name__}: {exc}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _check_token(self, query_token: str) -> None:
        header = self.headers.get("Authorization", "")
        token = header[len("Bearer "):].strip() if header.startswith("Bearer ") else query_token
        if not token or not self.server.authorised(token):
            raise HttpError(HTTPStatus.FORBIDDEN, "refused: this run's token is missing or wrong (use the URL "
                                                  "sow-qwen3 review printed)")

    def _api(self, method: str, path: str) -> None:
        catalogue = self.server.catalogue
        if path == "/api/songs":
            self._only(method, "GET")
            self._json(catalogue.summaries())
            return
        match = SONG_PATH.match(path)
        if match is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no API {path}")
        name, part = urllib.parse.unquote(match.group(1)), match.group(2)
        try:
            if part is None and method == "PUT":
                self._json(catalogue.save(name, self._body()))
            elif part is None:
                self._only(method, "GET")
                self._json(catalogue.view(name))
            elif part == "audio":
                self._only(method, "GET", "HEAD")
                self._audio(name, head=method == "HEAD")
            elif part == "envelope":
                self._only(method, "GET")
                self._json(catalogue.envelope(name))
            elif part == "judge":
                self._only(method, "POST")
                self._json(catalogue.judged(name, self._body()))
            else:
                self._only(method, "POST")
                self._json(catalogue.realign(name, self._body()))
        except UnknownSong:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no song named {name!r} in this review") from None
        except BadRequest as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        except SongUnavailable as exc:
            raise HttpError(HTTPStatus.BAD_GATEWAY, str(exc)) from None
        except OSError as exc:  # a save that could not be written: every file is as it was
            raise HttpError(HTTPStatus.INTERNAL_SERVER_ERROR, f"not saved, every file is as it was: "
                                                              f"{exc.strerror or exc}: {exc.filename or ''}") from None

    @staticmethod
    def _only(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here ({', '.join(allowed)})")

    # ------------------------------------------------------------------ bodies
    def _body(self) -> object:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a request body needs a Content-Length")
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(int(length))
        self._body_read = True
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}") from None

    def _discard_body(self) -> None:
        """Read an unread small body so the connection can carry the next request; else close it."""
        length = self.headers.get("Content-Length", "0")
        if getattr(self, "_body_read", False) or not length.isdigit() or int(length) == 0:
            return
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
        else:
            self.rfile.read(int(length))

    # ------------------------------------------------------------------ answers
    def _security_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")

    def _json(self, data: object, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._security_headers()
        self.end_headers()
        self.wfile.write(body)

    def _static(self, name: str, content_type: str, head: bool) -> None:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._security_headers()
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _audio(self, name: str, head: bool) -> None:
        playable = self.server.catalogue.song(name).playable
        size = playable.size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        wanted = self.headers.get("Range")
        match = RANGE.match(wanted.strip()) if wanted else None
        if match is not None and (match.group(1) or match.group(2)):
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            else:
                start = max(0, size - int(last))
            if start >= size or start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", playable.content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self._security_headers()
        self.end_headers()
        if head:
            return
        for chunk in playable.chunks(start, end, CHUNK_BYTES):
            self.wfile.write(chunk)
