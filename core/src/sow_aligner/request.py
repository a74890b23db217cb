"""One request, from its raw inputs to the values of every ``qwen3_aligner`` output: the request path.

Pure (no torch, no Triton): the engine's song (the audio as the model takes
it) and the voice activity detector are passed in, so the model, the
benchmarks and the tests run the same path with any stand-in.

    values = align_request(audio, lyrics_text, language_hint, song_audio=engine.song,
                           voice_activity=vad, settings=settings, thresholds=thresholds)

Guarantees: every InvalidRequest (a bad request) is raised before the VAD or
the model does any work, except the model's own refusals of the lyrics
(nothing alignable, too many units or tokens), which come from pass 1; the
checks run in the order AUDIO's shape and samples, its duration, the lyrics,
the language (the LYRICS and LANGUAGE tensors are decoded in their turn).
``outputs`` has one entry per output of config.pbtxt, each a list of the
request's values (no batch dimension); the duration is computed once.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from sow_qwen3_contract.quality import Thresholds
from sow_qwen3_contract.tensors import SAMPLE_RATE

from .errors import InvalidRequest
from .evidence import judge as service_judge
from .languages import resolve_language
from .lyrics import SungLyrics, sung_lines
from .settings import Settings
from .song_alignment import Judge, SongAlignment, align_song
from .validation import check_duration, one_clip, one_string
from .windows import Segments, SongAudio

# clip (1-D float32, 16 kHz) -> its voiced (start, end) seconds, or None when voice activity cannot be measured.
VoiceActivity = Callable[[np.ndarray], Segments | None]


@dataclass(frozen=True)
class ResponseValues:
    """One request's answer, and what the model logs and counts about it."""

    outputs: dict[str, list]  # output name -> its values, in config.pbtxt's units (no batch dimension)
    audio_seconds: float  # the clip's duration
    lines: int  # the sung lines timed
    description: str  # ``SongAlignment.describe()``: the model passes and what re-alignment changed


def align_request(
    samples: np.ndarray,
    lyrics_text: np.ndarray | str | None,
    language_hint: np.ndarray | str | None,
    *,
    song_audio: Callable[[np.ndarray], SongAudio],
    voice_activity: VoiceActivity,
    settings: Settings,
    thresholds: Thresholds,
    judge: Judge | None = None,
) -> ResponseValues:
    """Align one request: ``samples`` is the AUDIO tensor as received ([1, N]); ``lyrics_text`` and
    ``language_hint`` are the LYRICS and LANGUAGE tensors as received ([1, 1] UTF-8 bytes) or their text,
    None when not sent.

    ``song_audio`` is ``AlignmentEngine.song`` (called once, with the clip,
    after the checks and the VAD); ``voice_activity`` is asked
    once, for the whole clip, after the request's checks; its segments come
    back as VOICED_START / VOICED_END (empty when it answered None). Uses the
    settings' ``max_audio_seconds``, ``realign_passes`` and ``window_seconds``.
    ``judge`` (a benchmark's stand-in) replaces the service's, ``evidence.judge`` under ``thresholds``.
    Raises InvalidRequest for a bad request; anything else is a failure.
    """
    clip = one_clip(samples)
    seconds = clip.shape[0] / SAMPLE_RATE
    try:
        check_duration(seconds, settings.max_audio_seconds)
        lyrics = sung_lines(one_string(lyrics_text, "LYRICS") or "")
        language = resolve_language(one_string(language_hint, "LANGUAGE"))
        # The voiced segments come first: long songs are cut into windows in their silences.
        segments = voice_activity(clip)
        song = align_song(
            song_audio(clip), lyrics.lines, language, segments=segments,
            judge=judge or partial(service_judge, thresholds=thresholds), realign_passes=settings.realign_passes,
            window_seconds=settings.window_seconds,
        )
    except InvalidRequest as refusal:
        refusal.audio_seconds = seconds
        raise
    return ResponseValues(output_values(lyrics, song, language, segments), seconds, len(lyrics.lines), song.describe())


def output_values(lyrics: SungLyrics, song: SongAlignment, language: str, segments: Segments | None) -> dict[str, list]:
    """Every output's values for ``song``, the alignment of ``lyrics`` as ``language`` judged against ``segments``."""
    result, judgement = song.alignment, song.judgement
    voiced: Sequence[tuple[float, float]] = segments or ()
    return {
        "LANGUAGE_NAME": [language],
        "LINE_TEXT": lyrics.lines,
        "LINE_START": result.lines.starts,
        "LINE_END": result.lines.ends,
        "UNIT_TEXT": result.unit_text,
        "UNIT_START": result.unit_start,
        "UNIT_END": result.unit_end,
        "UNIT_LINE": result.unit_line,
        "SKIPPED_TEXT": [skipped.text for skipped in lyrics.skipped],
        "SKIPPED_LINE": [skipped.index for skipped in lyrics.skipped],
        "LINE_CONFIDENCE": result.evidence.line_confidence,
        "UNIT_CONFIDENCE": result.evidence.unit_confidence,
        "UNIT_REPAIRED": result.evidence.unit_repaired,
        "LINE_VOICED": judgement.line_voiced,
        "LINE_FLAGS": [",".join(codes) for codes in judgement.line_flags],
        "SONG_VERDICT": [judgement.verdict],
        "SONG_VOICED": [judgement.song_voiced],
        "LINE_PASS": song.line_pass,
        "VOICED_START": [start for start, _ in voiced],
        "VOICED_END": [end for _, end in voiced],
    }
