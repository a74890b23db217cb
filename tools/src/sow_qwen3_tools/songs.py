"""The benchmarks' deterministic songs: looped speech of the bundled sample with seeded lyrics.

Songs: about 30, 120 and 300 s of 16 kHz audio (assets/amazing_grace_zh.ogg
looped, with light seeded noise) and about 100, 300 and 500 Chinese
characters of lyrics in lines of 8-14 characters (seeded draws from the tiny
tokenizer's corpus characters, so most characters are one token, as with the
real tokenizer). Needs numpy, soundfile and soxr, nothing of the server or client.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sow_qwen3_contract.tensors import SAMPLE_RATE

from . import REPO

ASSET_AUDIO = REPO / "assets" / "amazing_grace_zh.ogg"
LANGUAGE = "Chinese"


@dataclass(frozen=True)
class Song:
    """A deterministic benchmark song: ``seconds`` of audio and ``chars`` CJK characters of lyrics."""

    seconds: int
    chars: int

    @property
    def key(self) -> str:
        return str(self.seconds)


SONGS = {song.key: song for song in (Song(30, 100), Song(120, 300), Song(300, 500))}
WARM_UP = Song(10, 30)




def song_audio(song: Song) -> np.ndarray:
    """The asset's speech looped to ``song.seconds`` at 16 kHz, plus seeded noise (-40 dB)."""
    from sow_qwen3_tools.perf_input import load_audio

    speech = load_audio(ASSET_AUDIO)
    looped = np.resize(speech, song.seconds * SAMPLE_RATE)
    noise = np.random.default_rng(song.seconds).normal(0.0, 0.01, looped.size)
    return np.clip(looped + noise, -1.0, 1.0).astype(np.float32)


def lyric_characters() -> list[str]:
    """The CJK characters of the tiny tokenizer's training corpus, sorted (one token each, mostly)."""
    from sow_qwen3_tools.tiny_model import CORPUS

    return sorted({ch for ch in CORPUS if "\u4e00" <= ch <= "\u9fff"})


def line_lengths(total: int, rng: np.random.Generator) -> list[int]:
    """Line lengths of 8-14 characters (the last ones may be a little shorter) summing to ``total``."""
    lengths, remaining = [], total
    while remaining > 14:
        length = int(rng.integers(8, 15))
        if remaining - length < 8:
            length = remaining // 2
        lengths.append(length)
        remaining -= length
    return lengths + [remaining]


def song_lyrics(song: Song) -> str:
    """``song.chars`` seeded CJK characters in lines of 8-14, one lyric line per text line."""
    rng = np.random.default_rng(song.chars)
    pool = lyric_characters()
    return "\n".join("".join(rng.choice(pool, size=n)) for n in line_lengths(song.chars, rng))


def song_data(song: Song) -> tuple[np.ndarray, str]:
    return song_audio(song), song_lyrics(song)
