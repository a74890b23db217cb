#!/usr/bin/env python3
"""Write a perf_analyzer ``--input-data`` JSON file for the qwen3_aligner model.

    perf_input.py AUDIO_FILE LYRICS_FILE [--language L] -o data.json

AUDIO_FILE is any file soundfile can decode (wav, flac, ogg, ...); it is
mixed down to mono and resampled to 16 kHz with soxr. LYRICS_FILE is UTF-8
text, one lyric line per text line. The JSON holds one request:

    {"data": [{"AUDIO":    {"content": [floats...], "shape": [N]},
               "LYRICS":   {"content": ["..."], "shape": [1]},
               "LANGUAGE": {"content": ["..."], "shape": [1]}}]}

Shapes exclude the batch dimension: perf_analyzer adds it (``-b 1``, the
default) because the model has ``max_batch_size`` > 0, so no ``--shape`` flag
is needed. Run it with scripts/perf_analyzer.sh.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sow_qwen3_contract.tensors import SAMPLE_RATE


def load_audio(path: Path) -> np.ndarray:
    """The file's audio as 16 kHz mono float32 samples (channels averaged, resampled with soxr)."""
    import soundfile
    import soxr

    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def input_data(audio: np.ndarray, lyrics: str, language: str | None) -> dict:
    """perf_analyzer's input-data document for one request (shapes without the batch dimension)."""
    entry = {
        "AUDIO": {"content": np.asarray(audio, dtype=np.float32).tolist(), "shape": [int(audio.size)]},
        "LYRICS": {"content": [lyrics], "shape": [1]},
    }
    if language is not None:
        entry["LANGUAGE"] = {"content": [language], "shape": [1]}
    return {"data": [entry]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio_file", type=Path)
    parser.add_argument("lyrics_file", type=Path)
    parser.add_argument("--language", default=None, help="LANGUAGE input (omitted: the model assumes Chinese)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    audio = load_audio(args.audio_file)
    lyrics = args.lyrics_file.read_text(encoding="utf-8")
    args.output.write_text(json.dumps(input_data(audio, lyrics, args.language), ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.output}: {audio.size / SAMPLE_RATE:.2f} s of audio, {len(lyrics.splitlines())} lyric lines",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
