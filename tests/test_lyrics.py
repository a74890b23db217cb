import pytest

from sow_aligner.errors import InvalidRequest
from sow_aligner.lyrics import decode_utf8, split_lines


def test_lines_are_stripped_and_blank_lines_dropped():
    text = "\n  奇异恩典 何等甘甜 \r\n\n\t\n我罪已得赦免\rAmazing grace\u2028 ，。 \n"
    assert split_lines(text) == ["奇异恩典 何等甘甜", "我罪已得赦免", "Amazing grace", "，。"]


def test_only_blank_text_has_no_lines():
    assert split_lines(" \n\t\r\n ") == []
    assert split_lines("") == []


def test_utf8_with_and_without_bom():
    assert decode_utf8("主啊".encode(), "LYRICS") == "主啊"
    assert decode_utf8(b"\xef\xbb\xbf" + "主啊".encode(), "LYRICS") == "主啊"


def test_invalid_utf8_names_the_input_and_the_byte():
    with pytest.raises(InvalidRequest, match=r"LYRICS is not valid UTF-8: byte 0xff at offset 3"):
        decode_utf8(b"abc\xffdef", "LYRICS")
