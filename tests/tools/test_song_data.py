"""The committed test songs (tests/data, written by scripts/make_test_song.py) agree with their truth."""
from __future__ import annotations

import pytest

from sow_aligner.lyrics import sung_lines
from sow_qwen3.timings import parse_lrc
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.song import DATA, LONG_SONG, SONGS, song_audio, truth


@pytest.mark.parametrize("name", SONGS)
def test_the_written_lyrics_expand_to_the_true_lrcs_lines(name):
    lyrics = sung_lines((DATA / f"{name}.txt").read_text(encoding="utf-8"))
    reference = parse_lrc((DATA / f"{name}.lrc").read_text(encoding="utf-8"))
    expected = truth(name)
    assert lyrics.lines == [line.text for line in reference] == [line.text for line in expected.lines]
    # centiseconds
    assert [line.start for line in reference] == pytest.approx([line.start for line in expected.lines], abs=0.0051)


def test_the_long_songs_lyrics_are_written_with_markers_and_repeats():
    written = (DATA / f"{LONG_SONG}.txt").read_text(encoding="utf-8").splitlines()
    lyrics = sung_lines("\n".join(written))
    notation = [(index, line) for index, line in enumerate(written) if line.startswith("[") or line == "x2"]
    assert [(item.index, item.text) for item in lyrics.skipped] == notation
    assert written.count("[Chorus]") == 2 and "[Chorus x2]" in written
    assert any(line.endswith("(x2)") for line in written) and any(line.endswith("×2") for line in written)
    chorus = lyrics.lines[4:9]
    assert [lyrics.lines[i:i + 5] == chorus for i in range(len(lyrics.lines) - 4)].count(True) == 4
    assert len(lyrics.lines) > len(written) - len(notation) - written.count("")


@pytest.mark.parametrize("name", SONGS)
def test_the_audio_lasts_as_long_as_its_truth_says(name):
    audio, expected = song_audio(name), truth(name)
    assert audio.size / SAMPLE_RATE == pytest.approx(expected.duration, abs=0.01)
    assert expected.lines[-1].end < expected.duration
    assert expected.gaps[-1][1] == pytest.approx(expected.duration, abs=0.001)


def test_the_long_song_lasts_about_seven_minutes_with_long_breaks():
    expected = truth(LONG_SONG)
    assert 400 <= expected.duration <= 440
    long_breaks = [end - start for start, end in expected.gaps if end - start >= 20]
    assert len(long_breaks) >= 6 and max(long_breaks) <= 45
