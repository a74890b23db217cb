"""Lyrics as people write them: section markers dropped, repeat notation sung out."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sow_aligner.errors import InvalidRequest
from sow_aligner.lyric_notation import RepeatLine, SectionMarker, SungText, classify_line
from sow_aligner.lyrics import MAX_REPEAT, MAX_SUNG_LINES, decode_utf8, sung_lines
from sow_qwen3_contract.response import Skipped


def test_lines_are_stripped_and_blank_lines_dropped():
    text = "\n  奇异恩典 何等甘甜 \r\n\n\t\n我罪已得赦免\rAmazing grace\u2028 ，。 \n"
    result = sung_lines(text)
    assert result.lines == ["奇异恩典 何等甘甜", "我罪已得赦免", "Amazing grace", "，。"]
    assert result.skipped == []


@pytest.mark.parametrize("text", [" \n\t\r\n ", ""])
def test_blank_lyrics_are_refused_as_empty(text):
    with pytest.raises(InvalidRequest, match="LYRICS is empty"):
        sung_lines(text)


def test_lyrics_of_markers_only_are_refused_saying_so():
    with pytest.raises(InvalidRequest, match="no line to sing: every line is a section marker or repeat notation"):
        sung_lines("[Chorus]\n\n(x2)\n副歌")


def test_utf8_with_and_without_bom():
    assert decode_utf8("主啊".encode(), "LYRICS") == "主啊"
    assert decode_utf8(b"\xef\xbb\xbf" + "主啊".encode(), "LYRICS") == "主啊"


def test_invalid_utf8_names_the_input_and_the_byte():
    with pytest.raises(InvalidRequest, match=r"LYRICS is not valid UTF-8: byte 0xff at offset 3"):
        decode_utf8(b"abc\xffdef", "LYRICS")


# ---------------------------------------------------------------- one line
MARKERS = {
    "[Chorus]": "chorus", "[Verse 2]": "verse2", "(Bridge)": "bridge", "Pre-Chorus:": "prechorus",
    "pre chorus": "prechorus", "Intro": "intro", "OUTRO": "outro", "Verse 1:": "verse1", "[Tag]": "tag",
    "副歌": "副歌", "主歌": "主歌", "主歌二": "主歌二", "桥段": "桥段", "前奏": "前奏", "间奏": "间奏", "尾声": "尾声",
    "副歌：": "副歌", "【副歌】": "副歌", "（桥段）": "桥段", "[Verse 1: Chris]": "verse1chris",
    "[Instrumental break]": "instrumentalbreak", "Final Chorus": "finalchorus", "Repeat Chorus": "chorus",
    "[]": "", "[00:12.34]": "0012.34",
}


@pytest.mark.parametrize("line", sorted(MARKERS))
def test_section_markers(line):
    assert classify_line(line) == SectionMarker(MARKERS[line])


@pytest.mark.parametrize("line, key, count", [
    ("Chorus x2", "chorus", 2), ("[Chorus x2]", "chorus", 2), ("[Chorus] x3", "chorus", 3),
    ("副歌 ×2", "副歌", 2), ("(Chorus) (repeat)", "chorus", 2), ("副歌（重复三遍）", "副歌", 3),
])
def test_markers_with_a_count(line, key, count):
    assert classify_line(line) == SectionMarker(key, count)


@pytest.mark.parametrize("line, count", [
    ("x2", 2), ("X3", 3), ("×2", 2), ("× 4", 4), ("*2", 2), ("2x", 2), ("3×", 3), ("(x2)", 2), ("[x2]", 2),
    ("（x２）", 2), ("【×3】", 3), ("Repeat", 2), ("(repeat)", 2), ("repeat 2x", 2), ("Repeat x3", 3),
    ("repeat 4 times", 4), ("重复", 2), ("(重复2次)", 2), ("重复两遍", 2), ("反复三次", 3), ("（两遍）", 2),
    ("重复十二遍", 12), ("x1000", 1000), ("x0", 0),
])
def test_repeat_lines(line, count):
    assert classify_line(line) == RepeatLine(count)


@pytest.mark.parametrize("line, text, count", [
    ("Hallelujah (x2)", "Hallelujah", 2), ("Hallelujah x2", "Hallelujah", 2), ("Holy holy ×3", "Holy holy", 3),
    ("我爱你×2", "我爱你", 2), ("我爱你x2", "我爱你", 2), ("主啊 *2", "主啊", 2), ("Give me 2x", "Give me", 2),
    ("我的心（重复两遍）", "我的心", 2), ("Sing [x2]", "Sing", 2), ("Sing (repeat 3x)", "Sing", 3),
    ("（Ｘ２）前面 ×2", "（Ｘ２）前面", 2),
])
def test_trailing_counts_repeat_the_line(line, text, count):
    assert classify_line(line) == SungText(text, count)


@pytest.mark.parametrize("line", [
    "(Hallelujah)", "（哈利路亚）", "(Jesus, my Lord)", "Amazing grace", "Chorus: Amazing grace", "The chorus of angels",
    "Verse by verse", "Malcolm x", "box 2", "Psalm 23", "max2", "I need you 24x7", "Repeat after me",
    "我要重复", "两遍都不够", "Bridge over troubled water", "(the bridge is falling)", "Section 3.2x",
])
def test_sung_text_is_left_as_written(line):
    assert classify_line(line) == SungText(line, 1)


# ---------------------------------------------------------------- a song
SONG = """\
[Verse 1]
Amazing grace (x2)

[Chorus]
Hallelujah
Praise the Lord

[Verse 2]
I once was lost
x2

[Chorus]

[Bridge]
主啊
×3
[Chorus x2]
"""


def test_a_song_with_markers_and_repeats():
    result = sung_lines(SONG)
    chorus = ["Hallelujah", "Praise the Lord"]
    assert result.lines == (["Amazing grace"] * 2 + chorus + ["I once was lost"] * 2 + chorus + ["主啊"] * 3
                            + chorus * 2)
    assert result.skipped == [
        Skipped(0, "[Verse 1]"), Skipped(3, "[Chorus]"), Skipped(7, "[Verse 2]"), Skipped(9, "x2"),
        Skipped(11, "[Chorus]"), Skipped(13, "[Bridge]"), Skipped(15, "×3"), Skipped(16, "[Chorus x2]"),
    ]


def test_a_block_repeat_covers_the_lines_since_the_last_blank_line_or_marker():
    assert sung_lines("A\n\nB\nC\n(x2)\nD").lines == ["A", "B", "C", "B", "C", "D"]
    assert sung_lines("A\n[Verse]\nB\nC\nx3").lines == ["A", "B", "C", "B", "C", "B", "C"]
    assert sung_lines("A x2\nB\n×2").lines == ["A", "A", "B", "A", "A", "B"]


def test_a_repeat_line_ends_its_block():
    assert sung_lines("A\nx2\nB\nx2").lines == ["A", "A", "B", "B"]
    assert sung_lines("A\nx2\nx2").lines == ["A", "A"]


def test_a_repeat_line_with_nothing_before_it_sings_nothing_and_is_skipped():
    result = sung_lines("(x2)\nA")
    assert result.lines == ["A"] and result.skipped == [Skipped(0, "(x2)")]


def test_a_reference_followed_by_a_repeat_line_repeats_the_section():
    assert sung_lines("[Chorus]\nA\nB\n\n[Chorus]\nx2").lines == ["A", "B", "A", "B", "A", "B"]


def test_a_header_count_sings_its_section_that_often_but_a_reference_gets_the_section_once():
    assert sung_lines("[Chorus x2]\nA\n\n[Verse]\nV\n[Chorus]").lines == ["A", "A", "V", "A"]


def test_a_section_is_its_block_with_inline_repeats_but_without_a_block_repeat():
    assert sung_lines("副歌\nA (x2)\nB\nx2\n\n主歌\nV\n\n副歌").lines == ["A", "A", "B", "A", "A", "B", "V", "A", "A", "B"]


def test_a_marker_followed_by_text_is_a_new_header_even_for_a_known_section():
    assert sung_lines("[Chorus]\nA\n\n[Chorus]\n\nB\n\n[Chorus]").lines == ["A", "B", "B"]


def test_a_reference_to_a_section_never_given_sings_nothing():
    result = sung_lines("[Intro]\n[Verse]\nA\n[Bridge]")
    assert result.lines == ["A"]
    assert [s.index for s in result.skipped] == [0, 1, 3]


def test_section_names_match_across_spellings():
    assert sung_lines("[Pre-Chorus]\nA\n\nVerse\nB\n\nPre Chorus:\n").lines == ["A", "B", "A"]
    assert sung_lines("【副歌】\n主\n\n（副歌）").lines == ["主", "主"]


def test_only_the_last_trailing_count_is_notation():
    assert sung_lines("A x2 x3").lines == ["A x2"] * 3


@pytest.mark.parametrize("text, line_number, count", [
    ("A\nB ×1000", 2, 1000), ("A\n\n(x0)", 3, 0), ("[Chorus]\nA\n[Chorus x21]", 3, 21),
    ("[Chorus x50]\nA", 1, 50), ("A\nrepeat 99 times", 2, 99),
])
def test_absurd_counts_are_refused_naming_the_line(text, line_number, count):
    message = rf"LYRICS line {line_number} .* asks for {count} repeats; .* 1 to {MAX_REPEAT} times"
    with pytest.raises(InvalidRequest, match=message):
        sung_lines(text)


def test_expansion_is_bounded():
    section = "\n".join(f"line {i}" for i in range(300))
    with pytest.raises(InvalidRequest, match=rf"expand to more than {MAX_SUNG_LINES} lines"):
        sung_lines(f"[Chorus]\n{section}\n\n[Chorus x20]")


# ---------------------------------------------------------------- properties
# Text with no notation: no vowels (so no English section name), no x, *, square brackets or
# 重复/次/遍, and Chinese characters that are in no section name.
PLAIN_CHARS = "bcdfghjklmnpqrstvwyzBCDFGHJKLMNP0123456789 ,.!?'()（），。！奇异恩典何等甘甜我罪已得赦免哈利路亚"
plain_line = st.text(alphabet=PLAIN_CHARS, min_size=1, max_size=30).filter(lambda s: s.strip())


@given(st.lists(st.one_of(plain_line, st.sampled_from(["", "  ", "\t"])), min_size=1, max_size=30))
def test_text_without_notation_is_unchanged(rows):
    text = "\n".join(rows)
    expected = [row.strip() for row in rows if row.strip()]
    if not expected:
        return
    result = sung_lines(text)
    assert result.lines == expected
    assert result.skipped == []


COUNT_FORMS = ["{text} (x{n})", "{text} ×{n}", "{text} x{n}", "{text}（重复{n}次）", "{text} [{n}x]", "{text} *{n}"]


@given(st.lists(st.tuples(plain_line, st.integers(1, MAX_REPEAT), st.sampled_from(COUNT_FORMS)), min_size=1,
                max_size=12))
def test_line_count_equals_the_sum_of_the_repeats(rows):
    text = "\n".join(form.format(text=line.strip(), n=n) for line, n, form in rows)
    result = sung_lines(text)
    assert len(result.lines) == sum(n for _, n, _ in rows)
    assert result.lines == [line.strip() for line, n, _ in rows for _ in range(n)]


MARKER_LINES = ["[Chorus]", "[Verse 2]", "(Bridge)", "副歌", "主歌", "Pre-Chorus:", "Intro", "[Chorus x2]",
                "Repeat Chorus", "间奏", "尾声"]
REPEAT_LINES = ["x2", "(x3)", "×2", "repeat", "重复两遍", "2x"]
ANY_LINE = st.one_of(plain_line, st.sampled_from(MARKER_LINES + REPEAT_LINES), st.just(""),
                     st.builds(lambda t, n: f"{t.strip()} (x{n})", plain_line, st.integers(1, 4)))


@given(st.lists(ANY_LINE, min_size=1, max_size=25))
def test_expansion_never_sings_a_marker_or_a_repeat_line(rows):
    notation = [i for i, row in enumerate(rows) if row in MARKER_LINES + REPEAT_LINES]
    try:
        result = sung_lines("\n".join(rows))
    except InvalidRequest as exc:
        assert "no line to sing" in str(exc) or "LYRICS is empty" in str(exc)
        assert all(not row.strip() or i in notation for i, row in enumerate(rows))
        return
    assert not set(result.lines) & set(MARKER_LINES + REPEAT_LINES)
    assert not any(line.endswith(")") and "(x" in line for line in result.lines)
    assert [s.index for s in result.skipped] == notation
    assert all(rows[s.index] == s.text for s in result.skipped)
