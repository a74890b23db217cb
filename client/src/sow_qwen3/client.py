"""``Client``: audio source + lyrics in, timed lines (LRC / JSON) out, through the Triton service.

    from sow_qwen3 import Client

    client = Client("127.0.0.1:8000", api_key="...")
    result = client.align("s3://worship/amazing-grace.mp3", lyrics_text, language="Chinese")
    print(result.lrc_content)

The server's tensor contract (model ``qwen3_aligner``): AUDIO FP32 [1, N] mono
16 kHz, LYRICS BYTES [1, 1], LANGUAGE BYTES [1, 1]; it answers LINE_TEXT,
LINE_START, LINE_END (the sung lines), LANGUAGE_NAME (the language it resolved
the hint to), SKIPPED_TEXT and SKIPPED_LINE (the lyric lines not sung: section
markers, repeat notation), and the evidence for the times (LINE_CONFIDENCE,
LINE_VOICED, LINE_FLAGS, SONG_VERDICT, SONG_VOICED, and LINE_PASS: the pass
that produced each line, 2 or more for a line re-aligned as doubtful). The model ``silero_vad``
takes the same AUDIO and answers voiced segments (``voice_activity``). Each call
opens its own connection and closes it, so
calls may run from several threads at once and no idle connection holds up a
server's shutdown.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sow_qwen3_contract.limits import DEFAULT_MAX_AUDIO_SECONDS, MAX_AUDIO_SECONDS_CEILING
from sow_qwen3_contract.quality import Thresholds
from sow_qwen3_contract.response import AlignmentResponse, Line, Skipped, SongQuality, decode_alignment
from sow_qwen3_contract.tensors import (
    ALIGNER_MODEL,
    AUDIO,
    LANGUAGE,
    LINE_OUTPUTS,
    LYRICS,
    SAMPLE_RATE,
    VAD_FRAME_SAMPLES,
    VAD_MODEL,
    VAD_OUTPUTS,
    VOICED_OUTPUTS,
)

from .audio import load_audio
from .errors import AlignError, AuthError, BadInputError, ServerError, ServerUnavailableError
from .files import read_lyrics
from .formats import to_json, to_json_data, to_lrc
from .settings import DEFAULT_TIMEOUT, DEFAULT_URL, MAX_DOWNLOAD_BYTES, PROTOCOLS, S3Settings, env_float, env_text
from .sources import fetched_audio

log = logging.getLogger("sow_qwen3")

FRAME_SECONDS = VAD_FRAME_SAMPLES / SAMPLE_RATE  # silero_vad's FRAME_PROBABILITY step
FORMATS = ("lrc", "json")
CONNECT_TIMEOUT = 10.0
API_KEY_HEADER = {"http": "api-key", "grpc": "triton-grpc-protocol-api-key"}


@dataclass(frozen=True)
class AlignResult:
    """One alignment. ``content`` is the text in the format ``align`` was asked for.

    ``language`` is the server's name for the language hint ("Chinese" for "zh").
    """

    lines: tuple[Line, ...]
    language: str
    duration_seconds: float
    format: str
    lrc_content: str
    json_data: dict
    header_bytes: int = 0  # bytes read from a remote object for the early duration check
    skipped: tuple[Skipped, ...] = ()  # lyric lines not sung: section markers, repeat notation
    quality: SongQuality | None = None
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)  # the samples sent, if kept
    # With the samples: the voiced (start, end) seconds the lines were judged against; () when the VAD was not run.
    voiced: tuple[tuple[float, float], ...] | None = field(default=None, repr=False, compare=False)

    @property
    def line_count(self) -> int:
        return len(self.lines)

    @property
    def content(self) -> str:
        return self.lrc_content if self.format == "lrc" else to_json(self.json_data)


@dataclass(frozen=True)
class VoiceActivity:
    """What the server's silero_vad heard in a clip: voiced segments (seconds) and per-frame probabilities."""

    segments: tuple[tuple[float, float], ...]
    frame_probability: np.ndarray = field(repr=False, compare=False)
    frame_seconds: float = FRAME_SECONDS


@dataclass(frozen=True)
class Health:
    live: bool
    ready: bool
    detail: str = ""


@dataclass
class Client:
    """A configured connection to the aligner service.

    Every argument left as None comes from the environment: SOW_QWEN3_TRITON_URL
    (host:port, default 127.0.0.1:8000; an http://, https:// (TLS) or grpc://
    URL's scheme chooses the protocol too), SOW_QWEN3_PROTOCOL (http or grpc;
    default the URL's, else http; ValueError when it contradicts the URL's),
    SOW_QWEN3_API_KEY, SOW_QWEN3_TIMEOUT (seconds per request, default 900),
    SOW_QWEN3_MAX_AUDIO_SECONDS (300), SOW_QWEN3_MAX_DOWNLOAD_BYTES (200 MiB)
    and the SOW_QWEN3_R2_* storage settings (see ``S3Settings``).
    """

    url: str | None = None
    protocol: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float | None = None
    s3: S3Settings | None = None
    max_audio_seconds: float | None = None
    max_download_bytes: int | None = None
    _ssl: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        protocol = (self.protocol or env_text("PROTOCOL") or "").lower()
        if protocol and protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
        url = self.url or env_text("TRITON_URL") or DEFAULT_URL
        self.url, named, self._ssl = server_address(url)
        if protocol and named and protocol != named:
            raise ValueError(f"the server URL {url!r} means the {named} protocol, but {protocol} was asked for "
                             "(--protocol or SOW_QWEN3_PROTOCOL): drop one or make them agree")
        self.protocol = protocol or named or "http"
        self.api_key = self.api_key if self.api_key is not None else env_text("API_KEY")
        self.timeout = self.timeout or env_float("TIMEOUT", DEFAULT_TIMEOUT)
        self.s3 = self.s3 or S3Settings.from_env()
        self.max_audio_seconds = self.max_audio_seconds or env_float("MAX_AUDIO_SECONDS", DEFAULT_MAX_AUDIO_SECONDS)
        if self.max_audio_seconds > MAX_AUDIO_SECONDS_CEILING:
            raise ValueError(f"the audio limit (max_audio_seconds, SOW_QWEN3_MAX_AUDIO_SECONDS) is "
                             f"{self.max_audio_seconds:g} s; no server aligns more than {MAX_AUDIO_SECONDS_CEILING:g} s")
        self.max_download_bytes = self.max_download_bytes or int(env_float("MAX_DOWNLOAD_BYTES", MAX_DOWNLOAD_BYTES))

    # ------------------------------------------------------------------ public
    def align(self, audio_source: str | Path, lyrics: str | Path, language: str = "Chinese",
              format: str = "lrc", keep_audio: bool = False) -> AlignResult:  # noqa: A002 - the documented keyword
        """Align ``lyrics`` (text, one lyric line per text line; or a Path to a UTF-8 file) to ``audio_source``.

        ``audio_source`` is a local path, an http(s) URL or ``s3://bucket/key``;
        ``keep_audio`` keeps the decoded samples in the result, and the voiced segments the server judged
        the lines against (``voiced``), for a plot: still one upload of the audio.
        Raises BadInputError, AuthError, ServerUnavailableError or ServerError.
        """
        if isinstance(lyrics, os.PathLike):
            lyrics = read_lyrics(lyrics)
        if format not in FORMATS:
            raise BadInputError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
        if not lyrics or not lyrics.strip():
            raise BadInputError("the lyrics are empty: give one lyric line per text line")
        started = time.monotonic()
        audio, header_bytes = self.load(audio_source)
        timing = self.align_samples(audio, lyrics, language, voiced=keep_audio)
        lines = timing.lines
        duration = audio.size / SAMPLE_RATE
        log.info("aligned %s: %.1f s of audio, %d lines in %.2f s", audio_source, duration, len(lines),
                 time.monotonic() - started)
        return AlignResult(tuple(lines), timing.language, duration, format, to_lrc(lines, duration),
                           to_json_data(lines, duration, timing.language, timing.quality, timing.skipped),
                           header_bytes, tuple(timing.skipped), timing.quality, audio if keep_audio else None,
                           timing.voiced)

    def load(self, audio_source: str | Path) -> tuple[np.ndarray, int]:
        """Fetch and decode ``audio_source`` to 16 kHz mono float32; also the header bytes read remotely."""
        with fetched_audio(audio_source, s3=self.s3, max_bytes=self.max_download_bytes,
                           max_seconds=self.max_audio_seconds, timeout=self.timeout) as fetched:
            return load_audio(fetched.path, self.max_audio_seconds, name=str(audio_source)), fetched.header_bytes

    def align_samples(self, audio: np.ndarray, lyrics: str, language: str = "Chinese",
                      voiced: bool = False) -> AlignmentResponse:
        """Align 16 kHz mono float32 ``audio`` (already decoded): its timed lines with their evidence,
        the language used, the lyric lines not timed and the song's quality; with ``voiced``, also the
        voiced segments the server judged the lines against."""
        outputs = LINE_OUTPUTS + (VOICED_OUTPUTS if voiced else ())
        result = self._infer(ALIGNER_MODEL, lambda module: request_inputs(module, audio, lyrics, language), outputs)
        return decode_alignment(response_columns(result, outputs))

    def voice_activity(self, audio: np.ndarray) -> VoiceActivity:
        """The server's silero_vad on 16 kHz mono float32 ``audio``."""
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
        result = self._infer(VAD_MODEL, lambda module: [infer_input(module, AUDIO, samples, "FP32")], VAD_OUTPUTS)
        starts = result.as_numpy("SEGMENT_START").reshape(-1)
        ends = result.as_numpy("SEGMENT_END").reshape(-1)
        return VoiceActivity(tuple((float(s), float(e)) for s, e in zip(starts, ends)),
                             result.as_numpy("FRAME_PROBABILITY").reshape(-1).astype(np.float32))

    def quality_thresholds(self) -> Thresholds:
        """The flag and verdict thresholds the server's qwen3_aligner uses (its config.pbtxt parameters)."""
        try:
            with self._connection() as (_, client):
                kwargs = {"as_json": True} if self.protocol == "grpc" else {}
                config = client.get_model_config(ALIGNER_MODEL, headers=self._headers(), **kwargs)
        except Exception as exc:  # tritonclient raises its own and transport errors
            raise classify(exc) from None
        config = config.get("config", config)  # gRPC wraps it
        parameters = {key: value.get("string_value", value.get("stringValue", ""))
                      for key, value in config.get("parameters", {}).items()}
        try:
            return Thresholds.from_parameters(parameters)
        except ValueError as exc:
            raise ServerError(f"the server's {ALIGNER_MODEL} configuration has no usable quality thresholds: {exc}") from None

    def _infer(self, model: str, inputs: Callable[[object], list], outputs: Sequence[str]):
        """One inference call of ``model``; ``inputs`` builds the request tensors for the tritonclient module."""
        with self._connection() as (module, client):
            tensors = inputs(module)
            requested = [module.InferRequestedOutput(name) for name in outputs]
            kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
            try:
                return client.infer(model, tensors, outputs=requested, headers=self._headers(), **kwargs)
            except Exception as exc:  # tritonclient raises its own and transport errors
                raise classify(exc) from None

    def health(self) -> Health:
        """Whether the server is live and the aligner model ready (never raises for an unreachable server)."""
        try:
            with self._connection() as (_, client):
                live = bool(client.is_server_live())
                ready = live and bool(client.is_model_ready(ALIGNER_MODEL))
        except Exception as exc:  # unreachable, refused, timed out
            return Health(False, False, classify(exc).args[0])
        return Health(live, ready, "" if ready else f"model {ALIGNER_MODEL} is not ready")

    # ----------------------------------------------------------------- private
    def _headers(self) -> dict[str, str] | None:
        return {API_KEY_HEADER[self.protocol]: self.api_key} if self.api_key else None

    @contextmanager
    def _connection(self) -> Iterator[tuple[object, object]]:
        if self.protocol == "grpc":
            import tritonclient.grpc as module

            client = module.InferenceServerClient(self.url)
        else:
            import tritonclient.http as module

            client = module.InferenceServerClient(self.url, connection_timeout=min(CONNECT_TIMEOUT, self.timeout),
                                                  network_timeout=self.timeout, ssl=self._ssl)
        try:
            yield module, client
        finally:
            client.close()


# URL scheme -> (protocol, TLS)
SCHEMES: dict[str, tuple[str, bool]] = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False)}


def server_address(url: str) -> tuple[str, str | None, bool]:
    """``host:port``, the protocol the URL's scheme names (None without one) and whether to use TLS.

    Takes ``host:port`` or an http://, https:// or grpc:// URL; ValueError for another scheme.
    """
    scheme, separator, rest = url.strip().partition("://")
    if not separator:
        return url.strip().rstrip("/"), None, False
    if scheme.lower() not in SCHEMES:
        raise ValueError(f"server URL must be host:port, http://, https:// or grpc://host:port; got {url!r}")
    protocol, tls = SCHEMES[scheme.lower()]
    return rest.rstrip("/"), protocol, tls


def request_inputs(module, audio: np.ndarray, lyrics: str | bytes, language: str | None) -> list:
    """The request tensors for ``module`` (tritonclient.http or .grpc): batch dimension 1.

    ``lyrics`` given as bytes are sent as they are; LANGUAGE is left out when ``language`` is empty.
    """
    raw = lyrics if isinstance(lyrics, bytes) else lyrics.encode("utf-8")
    inputs = [
        infer_input(module, AUDIO, np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1), "FP32"),
        infer_input(module, LYRICS, np.array([[raw]], dtype=np.object_), "BYTES"),
    ]
    if language:
        inputs.append(infer_input(module, LANGUAGE, np.array([[language.encode("utf-8")]], dtype=np.object_),
                                  "BYTES"))
    return inputs


def infer_input(module, name: str, data: np.ndarray, datatype: str):
    """One ``module.InferInput`` holding ``data``."""
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def response_columns(result, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The outputs ``names`` of a tritonclient InferResult, each flat (batch dimension of 1 removed),
    as ``sow_qwen3_contract.response.decode_alignment`` takes them."""
    return {name: result.as_numpy(name).reshape(-1) for name in names}


# What a refusal means, by its status: tritonclient.http reports the HTTP status
# ("403"), tritonclient.grpc the gRPC code ("StatusCode.PERMISSION_DENIED").
# The status decides; the message is only ever kept, never parsed, except where
# Triton gives one status two meanings (GRPC_RESTRICTED, STUB_UNHEALTHY).
ERROR_BY_STATUS: dict[str, type[AlignError]] = {
    "400": BadInputError,
    "StatusCode.INVALID_ARGUMENT": BadInputError,
    "413": BadInputError,  # over the proxy's request-size cap
    "StatusCode.RESOURCE_EXHAUSTED": BadInputError,
    "401": AuthError,
    "403": AuthError,
    "StatusCode.UNAUTHENTICATED": AuthError,
    "StatusCode.PERMISSION_DENIED": AuthError,
    "404": ServerUnavailableError,  # the model is not loaded
    "StatusCode.NOT_FOUND": ServerUnavailableError,
    "502": ServerUnavailableError,  # a proxy in front found no server
    "503": ServerUnavailableError,  # queue full
    "504": ServerUnavailableError,
    "StatusCode.UNAVAILABLE": ServerUnavailableError,
    "StatusCode.DEADLINE_EXCEEDED": ServerUnavailableError,
    "500": ServerError,
    "StatusCode.INTERNAL": ServerError,
}
# Triton refuses a gRPC call without the API key as UNAVAILABLE, with this message.
GRPC_RESTRICTED = "This protocol is restricted"
# While the supervisor reloads a model whose Python process died, Triton fails the requests the
# dead process held with 500 / INTERNAL and this message: retry later, like a 503.
STUB_UNHEALTHY = "is not healthy"
PREFIX: dict[type[AlignError], str] = {
    BadInputError: "",
    AuthError: "the server refused the API key: ",
    ServerUnavailableError: "the aligner service is unavailable: ",
    ServerError: "the server failed to align: ",
}


def classify(exc: Exception) -> AlignError:
    """The typed error for a failed call to the server, decided by its status; its message keeps the server's."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, AlignError):
        return exc
    if not isinstance(exc, InferenceServerException):
        return ServerUnavailableError(f"cannot reach the aligner service: {type(exc).__name__}: {exc}")
    message = exc.message() or str(exc)
    status = str(exc.status() or "")
    if not status:  # no answer: the connection failed or timed out
        return ServerUnavailableError(f"cannot reach the aligner service: {message}")
    kind = ERROR_BY_STATUS.get(status)
    if status == "StatusCode.UNAVAILABLE" and message.startswith(GRPC_RESTRICTED):
        kind = AuthError
    if kind is ServerError and STUB_UNHEALTHY in message:
        kind = ServerUnavailableError
    if kind is None:
        return ServerError(f"the server answered {status}: {message}")
    return kind(PREFIX[kind] + message)
