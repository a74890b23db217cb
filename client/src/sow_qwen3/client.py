"""``Client``: audio source + lyrics in, timed lines (LRC / JSON) out, through the Triton service.

    from sow_qwen3 import Client

    client = Client("127.0.0.1:8000", api_key="...")
    result = client.align("s3://worship/amazing-grace.mp3", lyrics_text, language="Chinese")
    print(result.lrc_content)

The server's tensor contract (model ``qwen3_aligner``): AUDIO FP32 [1, N] mono
16 kHz, LYRICS BYTES [1, 1], LANGUAGE BYTES [1, 1]; it answers LINE_TEXT,
LINE_START and LINE_END, and the evidence for them (LINE_CONFIDENCE,
LINE_VOICED, LINE_FLAGS, SONG_VERDICT, SONG_VOICED). The model ``silero_vad``
takes the same AUDIO and answers voiced segments (``voice_activity``). Each call opens its own connection and closes it, so
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

from .audio import SAMPLE_RATE, load_audio
from .errors import AlignError, AuthError, BadInputError, ServerError, ServerUnavailableError
from .files import read_lyrics
from .formats import Line, SongQuality, to_json, to_json_data, to_lrc
from .quality import Thresholds, is_flagged
from .settings import (
    DEFAULT_TIMEOUT, DEFAULT_URL, MAX_AUDIO_SECONDS, MAX_DOWNLOAD_BYTES, PROTOCOLS, S3Settings, env_float, env_text,
)
from .sources import fetched_audio

log = logging.getLogger("sow_qwen3")

MODEL = "qwen3_aligner"
VAD_MODEL = "silero_vad"
OUTPUTS = ("LINE_TEXT", "LINE_START", "LINE_END", "LINE_CONFIDENCE", "LINE_VOICED", "LINE_FLAGS", "SONG_VERDICT",
           "SONG_VOICED")
VAD_OUTPUTS = ("SEGMENT_START", "SEGMENT_END", "FRAME_PROBABILITY")
FRAME_SECONDS = 512 / SAMPLE_RATE  # silero_vad's FRAME_PROBABILITY step
FORMATS = ("lrc", "json")
CONNECT_TIMEOUT = 10.0
API_KEY_HEADER = {"http": "api-key", "grpc": "triton-grpc-protocol-api-key"}


@dataclass(frozen=True)
class AlignResult:
    """One alignment. ``content`` is the text in the format ``align`` was asked for."""

    lines: tuple[Line, ...]
    language: str
    duration_seconds: float
    format: str
    lrc_content: str
    json_data: dict
    header_bytes: int = 0  # bytes read from a remote object for the early duration check
    quality: SongQuality | None = None
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)  # the samples sent, if kept

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
    (host:port, default 127.0.0.1:8000), SOW_QWEN3_PROTOCOL (http or grpc),
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
        self.protocol = (self.protocol or env_text("PROTOCOL") or "http").lower()
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {self.protocol!r}")
        self.url, self._ssl = server_address(self.url or env_text("TRITON_URL") or DEFAULT_URL)
        if self._ssl and self.protocol == "grpc":
            raise ValueError("https:// is for the HTTP protocol; for gRPC give host:port")
        self.api_key = self.api_key if self.api_key is not None else env_text("API_KEY")
        self.timeout = self.timeout or env_float("TIMEOUT", DEFAULT_TIMEOUT)
        self.s3 = self.s3 or S3Settings.from_env()
        self.max_audio_seconds = self.max_audio_seconds or env_float("MAX_AUDIO_SECONDS", MAX_AUDIO_SECONDS)
        self.max_download_bytes = self.max_download_bytes or int(env_float("MAX_DOWNLOAD_BYTES", MAX_DOWNLOAD_BYTES))

    # ------------------------------------------------------------------ public
    def align(self, audio_source: str | Path, lyrics: str | Path, language: str = "Chinese",
              format: str = "lrc", keep_audio: bool = False) -> AlignResult:  # noqa: A002 - the documented keyword
        """Align ``lyrics`` (text, one lyric line per text line; or a Path to a UTF-8 file) to ``audio_source``.

        ``audio_source`` is a local path, an http(s) URL or ``s3://bucket/key``;
        ``keep_audio`` keeps the decoded samples in the result (for a plot).
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
        lines, quality = self._align(audio, lyrics, language)
        duration = audio.size / SAMPLE_RATE
        log.info("aligned %s: %.1f s of audio, %d lines in %.2f s", audio_source, duration, len(lines),
                 time.monotonic() - started)
        return AlignResult(tuple(lines), language, duration, format, to_lrc(lines, duration),
                           to_json_data(lines, duration, language, quality), header_bytes, quality,
                           audio if keep_audio else None)

    def load(self, audio_source: str | Path) -> tuple[np.ndarray, int]:
        """Fetch and decode ``audio_source`` to 16 kHz mono float32; also the header bytes read remotely."""
        with fetched_audio(audio_source, s3=self.s3, max_bytes=self.max_download_bytes,
                           max_seconds=self.max_audio_seconds, timeout=self.timeout) as fetched:
            return load_audio(fetched.path, self.max_audio_seconds, name=str(audio_source)), fetched.header_bytes

    def align_samples(self, audio: np.ndarray, lyrics: str, language: str = "Chinese") -> list[Line]:
        """Align 16 kHz mono float32 ``audio`` (already decoded) and return its timed lines."""
        return self._align(audio, lyrics, language)[0]

    def voice_activity(self, audio: np.ndarray) -> VoiceActivity:
        """The server's silero_vad on 16 kHz mono float32 ``audio``."""
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
        result = self._infer(VAD_MODEL, lambda module: [infer_input(module, "AUDIO", samples, "FP32")], VAD_OUTPUTS)
        starts = result.as_numpy("SEGMENT_START").reshape(-1)
        ends = result.as_numpy("SEGMENT_END").reshape(-1)
        return VoiceActivity(tuple((float(s), float(e)) for s, e in zip(starts, ends)),
                             result.as_numpy("FRAME_PROBABILITY").reshape(-1).astype(np.float32))

    def quality_thresholds(self) -> Thresholds:
        """The flag and verdict thresholds the server's qwen3_aligner uses (its config.pbtxt parameters)."""
        try:
            with self._connection() as (_, client):
                kwargs = {"as_json": True} if self.protocol == "grpc" else {}
                config = client.get_model_config(MODEL, headers=self._headers(), **kwargs)
        except Exception as exc:  # tritonclient raises its own and transport errors
            raise classify(exc) from None
        config = config.get("config", config)  # gRPC wraps it
        parameters = {key: value.get("string_value", value.get("stringValue", ""))
                      for key, value in config.get("parameters", {}).items()}
        try:
            return Thresholds.from_parameters(parameters)
        except ValueError as exc:
            raise ServerError(f"the server's {MODEL} configuration has no usable quality thresholds: {exc}") from None

    def _align(self, audio: np.ndarray, lyrics: str, language: str) -> tuple[list[Line], SongQuality]:
        """Timed lines with their evidence, and the song's quality, from the server."""
        result = self._infer(MODEL, lambda module: request_inputs(module, audio, lyrics, language), OUTPUTS)
        columns = {name: result.as_numpy(name).reshape(-1) for name in OUTPUTS}
        lines = [
            Line(_text(text), float(start), float(end), _known(confidence), _known(voiced),
                 tuple(code for code in _text(flags).split(",") if code))
            for text, start, end, confidence, voiced, flags in zip(
                *(columns[name] for name in ("LINE_TEXT", "LINE_START", "LINE_END", "LINE_CONFIDENCE", "LINE_VOICED",
                                             "LINE_FLAGS")))
        ]
        quality = SongQuality(_text(columns["SONG_VERDICT"][0]), _known(columns["SONG_VOICED"][0]),
                              sum(1 for line in lines if is_flagged(line.flags)))
        return lines, quality

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
                ready = live and bool(client.is_model_ready(MODEL))
        except Exception as exc:  # unreachable, refused, timed out
            return Health(False, False, classify(exc).args[0])
        return Health(live, ready, "" if ready else f"model {MODEL} is not ready")

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


def server_address(url: str) -> tuple[str, bool]:
    """``host:port`` and whether to use TLS, from ``host:port`` or an http(s):// or grpc:// URL."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator:
        scheme, rest = "", url.strip()
    if scheme.lower() not in ("", "http", "https", "grpc"):
        raise ValueError(f"server URL must be host:port or http(s)://host:port; got {url!r}")
    return rest.rstrip("/"), scheme.lower() == "https"


def request_inputs(module, audio: np.ndarray, lyrics: str | bytes, language: str | None) -> list:
    """The request tensors for ``module`` (tritonclient.http or .grpc): batch dimension 1.

    ``lyrics`` given as bytes are sent as they are; LANGUAGE is left out when ``language`` is empty.
    """
    raw = lyrics if isinstance(lyrics, bytes) else lyrics.encode("utf-8")
    inputs = [
        infer_input(module, "AUDIO", np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1), "FP32"),
        infer_input(module, "LYRICS", np.array([[raw]], dtype=np.object_), "BYTES"),
    ]
    if language:
        inputs.append(infer_input(module, "LANGUAGE", np.array([[language.encode("utf-8")]], dtype=np.object_),
                                  "BYTES"))
    return inputs


def infer_input(module, name: str, data: np.ndarray, datatype: str):
    """One ``module.InferInput`` holding ``data``."""
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def _known(value: float) -> float | None:
    """A float from the server, None for its NaN ("not known")."""
    number = float(value)
    return None if np.isnan(number) else number


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def classify(exc: Exception) -> AlignError:
    """The typed error for a failed call to the server; its message keeps the server's."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, AlignError):
        return exc
    if not isinstance(exc, InferenceServerException):
        return ServerUnavailableError(f"cannot reach the aligner service: {type(exc).__name__}: {exc}")
    message = exc.message() or str(exc)
    status = str(exc.status() or "")
    lowered = message.lower()
    if "restricted" in lowered or "api-key" in lowered or status in ("401", "403"):
        return AuthError(f"the server refused the API key: {message}")
    if "queue" in lowered or "not ready" in lowered or "unknown model" in lowered or "unavailable" in lowered \
            or status in ("503", "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
        return ServerUnavailableError(f"the aligner service is unavailable: {message}")
    if status in ("400", "StatusCode.INVALID_ARGUMENT"):
        return BadInputError(message)
    if status in ("500", "StatusCode.INTERNAL"):
        return ServerError(f"the server failed to align: {message}")
    if not status or "timed out" in lowered or "connect" in lowered:
        return ServerUnavailableError(f"cannot reach the aligner service: {message}")
    return ServerError(f"the server answered {status}: {message}")
