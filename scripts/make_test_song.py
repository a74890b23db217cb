#!/usr/bin/env python3
"""Write the synthetic test songs, whose true line times are known.

    scripts/make_test_song.py [--out-dir tests/data] [--song synthetic_song|synthetic_song_7min]

Speech lines from espeak-ng (``apt-get install espeak-ng``), English verses and
a Chinese chorus, placed at chosen times over a quiet noise bed, with
instrumental gaps of tones and noise between the sections. Two songs (both by
default, or the one ``--song`` names):

* ``synthetic_song``: 56 s, the chorus twice, gaps of 3-7 s; its lyrics are the
  plain lines;
* ``synthetic_song_7min``: about 7 minutes, the chorus four times (once with a
  line sung twice in a row), instrumental breaks of 20-40 s, and lyrics written
  as people write them: section markers, a bare second ``[Chorus]``, ``(x2)``,
  a repeat line and ``[Chorus x2]`` (``LONG_LYRICS``), which the server expands
  to the sung lines.

For a song NAME it writes:

* ``NAME.ogg``: the song, Ogg/Opus, 16 kHz mono;
* ``NAME.txt``: the lyrics as written (one line per sung line for the first song);
* ``NAME.lrc``: the true LRC (each sung line's start is where its speech starts);
* ``NAME.truth.json``: each sung line's true start and end, and the instrumental gaps.

The tests use the committed files and need no espeak-ng; run this again only
to change the song.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

from sow_qwen3_contract.tensors import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[1]
SEED = 20261129
BED_LEVEL = 0.003  # the noise bed under everything (about -50 dBFS)
SPEECH_LEVEL = 0.6  # peak of each spoken line
LINE_PAUSE = 0.5  # seconds between lines of one section
ONSET_LEVEL = 0.02  # a line starts (and ends) where its speech first (last) rises above this

VERSE_1 = [("en-us", "Amazing grace, how sweet the sound"), ("en-us", "That saved a wretch like me"),
           ("en-us", "I once was lost, but now am found"), ("en-us", "Was blind, but now I see")]
CHORUS = [("cmn", "奇异恩典 何等甘甜"), ("cmn", "我罪已得赦免")]
VERSE_2 = [("en-us", "Through many dangers, toils and snares"), ("en-us", "I have already come")]
# (kind, content): a section of lines, or an instrumental gap of that many seconds.
SONG = [("gap", 5.0), ("lines", VERSE_1), ("gap", 7.0), ("lines", CHORUS), ("gap", 6.0),
        ("lines", VERSE_2), ("gap", 6.0), ("lines", CHORUS), ("gap", 3.0)]

# The 7-minute song: its chorus has a line sung twice in a row; the chorus is sung four times.
LONG_CHORUS = [("cmn", "奇异恩典 何等甘甜"), ("cmn", "我罪已得赦免"), ("cmn", "前我失丧 今被寻回"),
               ("cmn", "前我失丧 今被寻回"), ("cmn", "瞎眼今得看见")]
LONG_VERSE_2 = VERSE_2 + [
                ("en-us", "'Tis grace hath brought me safe thus far"), ("en-us", "And grace will lead me home")]
LONG_VERSE_3 = [("en-us", "When we've been there ten thousand years"), ("en-us", "Bright shining as the sun"),
                ("en-us", "We've no less days to sing God's praise"), ("en-us", "Than when we'd first begun")]
BRIDGE = [("en-us", "Hallelujah, hallelujah"), ("en-us", "Praise the Lord, my soul")]
OUTRO = [("en-us", "Amen"), ("en-us", "Amen")]
LONG_SONG = [("gap", 40.0), ("lines", VERSE_1), ("gap", 25.0), ("lines", LONG_CHORUS), ("gap", 45.0),
             ("lines", LONG_VERSE_2), ("gap", 30.0), ("lines", LONG_CHORUS), ("gap", 40.0),
             ("lines", LONG_VERSE_3), ("gap", 25.0), ("lines", BRIDGE + BRIDGE), ("gap", 35.0),
             ("lines", LONG_CHORUS), ("gap", 3.0), ("lines", LONG_CHORUS), ("gap", 40.0),
             ("lines", OUTRO), ("gap", 25.0)]
# The same song as a lyrics sheet writes it (docs/design.md, "Lyrics as people write them").
LONG_LYRICS = """[Intro]

[Verse 1]
Amazing grace, how sweet the sound
That saved a wretch like me
I once was lost, but now am found
Was blind, but now I see

[Chorus]
奇异恩典 何等甘甜
我罪已得赦免
前我失丧 今被寻回 (x2)
瞎眼今得看见

[Interlude]

[Verse 2]
Through many dangers, toils and snares
I have already come
'Tis grace hath brought me safe thus far
And grace will lead me home

[Chorus]

[Verse 3]
When we've been there ten thousand years
Bright shining as the sun
We've no less days to sing God's praise
Than when we'd first begun

[Bridge]
Hallelujah, hallelujah
Praise the Lord, my soul
x2

[Chorus x2]

[Outro]
Amen ×2
"""
# name: (sections, the lyrics as written (None: the sung lines, one per line), Opus compression level
# (None: libsndfile's default, about 28 kbit/s; 0.98: about 11 kbit/s, 580 KB for 7 minutes, on which silero_vad
# hears every line as at the default; at 1.0, about 6 kbit/s, it misses the short ones))
SONGS = {"synthetic_song": (SONG, None, None), "synthetic_song_7min": (LONG_SONG, LONG_LYRICS, 0.98)}


def speak(voice: str, text: str, workdir: Path) -> np.ndarray:
    """espeak-ng's rendering of ``text``, 16 kHz mono float32, trimmed to its speech."""
    wav = workdir / "line.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
    data, rate = soundfile.read(wav, dtype="float32")
    data = soxr.resample(data, rate, SAMPLE_RATE).astype(np.float32)
    data *= SPEECH_LEVEL / np.max(np.abs(data))
    loud = np.flatnonzero(np.abs(data) > ONSET_LEVEL)
    return data[loud[0]:loud[-1] + 1]


def instrumental(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Tones (a chord that changes every half second) and noise bursts (like a hi-hat on the beat)."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n, dtype=np.float64)
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 311.1)]
    step = SAMPLE_RATE // 2
    for index, begin in enumerate(range(0, n, step)):
        end = min(n, begin + step)
        envelope = np.exp(-3.0 * (t[begin:end] - t[begin]))
        for frequency in chords[index % len(chords)]:
            out[begin:end] += 0.08 * envelope * np.sin(2 * np.pi * frequency * t[begin:end])
    burst = int(0.06 * SAMPLE_RATE)
    for begin in range(0, n - burst, SAMPLE_RATE // 4):
        out[begin:begin + burst] += 0.05 * rng.standard_normal(burst) * np.linspace(1, 0, burst)
    return out.astype(np.float32)


def build(sections: list[tuple], workdir: Path) -> tuple[np.ndarray, list[dict], list[list[float]]]:
    """The song's samples, its lines (text, start, end) and its instrumental gaps."""
    rng = np.random.default_rng(SEED)
    pieces: list[np.ndarray] = []
    lines: list[dict] = []
    gaps: list[list[float]] = []
    cursor = 0.0
    for kind, content in sections:
        if kind == "gap":
            pieces.append(instrumental(content, rng))
            gaps.append([round(cursor, 3), round(cursor + content, 3)])
            cursor += content
            continue
        for index, (voice, text) in enumerate(content):
            speech = speak(voice, text, workdir)
            lines.append({"text": text, "start": round(cursor, 3), "end": round(cursor + speech.size / SAMPLE_RATE, 3)})
            pieces.append(speech)
            cursor += speech.size / SAMPLE_RATE
            if index + 1 < len(content):
                pieces.append(np.zeros(int(LINE_PAUSE * SAMPLE_RATE), dtype=np.float32))
                cursor += int(LINE_PAUSE * SAMPLE_RATE) / SAMPLE_RATE
    song = np.concatenate(pieces)
    song += BED_LEVEL * rng.standard_normal(song.size).astype(np.float32)
    return np.clip(song, -1.0, 1.0), lines, gaps


def lrc(lines: list[dict]) -> str:
    out = []
    for line in lines:
        minutes, seconds = divmod(line["start"], 60)
        out.append(f"[{int(minutes):02d}:{seconds:05.2f}]{line['text']}")
    return "\n".join(out) + "\n"


def write_song(name: str, out_dir: Path) -> None:
    """Build song ``name`` of SONGS and write its four files into ``out_dir``."""
    sections, written, compression = SONGS[name]
    with tempfile.TemporaryDirectory() as workdir:
        song, lines, gaps = build(sections, Path(workdir))
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / name
    soundfile.write(f"{base}.ogg", song, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=compression)
    lyrics = written if written is not None else "".join(line["text"] + "\n" for line in lines)
    Path(f"{base}.txt").write_text(lyrics, encoding="utf-8")
    Path(f"{base}.lrc").write_text(lrc(lines), encoding="utf-8")
    truth = {"duration_seconds": round(song.size / SAMPLE_RATE, 3), "lines": lines, "instrumental_gaps": gaps}
    Path(f"{base}.truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {base}.ogg ({song.size / SAMPLE_RATE:.1f} s, {len(lines)} lines) and its .txt, .lrc, .truth.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "tests" / "data")
    parser.add_argument("--song", choices=sorted(SONGS), help="write only this song (default: all)")
    args = parser.parse_args(argv)
    if not shutil.which("espeak-ng"):
        print("make_test_song.py: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    for name in [args.song] if args.song else SONGS:
        write_song(name, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
