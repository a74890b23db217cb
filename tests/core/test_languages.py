import pytest

from sow_aligner.errors import InvalidRequest
from sow_aligner.languages import DEFAULT_LANGUAGE, LANGUAGE_CODES, SUPPORTED_LANGUAGES, resolve_language


@pytest.mark.parametrize("name", SUPPORTED_LANGUAGES)
def test_names_in_any_case(name):
    assert resolve_language(name) == name
    assert resolve_language(name.upper()) == name
    assert resolve_language(f"  {name.lower()} ") == name


@pytest.mark.parametrize("code,name", sorted(LANGUAGE_CODES.items()))
def test_codes_with_and_without_region(code, name):
    assert resolve_language(code) == name
    assert resolve_language(code.upper() + "-XX") == name
    assert resolve_language(code + "_Hant") == name


def test_every_code_names_a_supported_language():
    assert set(LANGUAGE_CODES.values()) == set(SUPPORTED_LANGUAGES)


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_means_chinese(blank):
    assert resolve_language(blank) == DEFAULT_LANGUAGE == "Chinese"


@pytest.mark.parametrize("code,name", [
    ("zho", "Chinese"), ("chi", "Chinese"), ("cmn", "Chinese"), ("CMN-Hans", "Chinese"), ("eng", "English"),
    ("yue", "Cantonese"), ("fra", "French"), ("fre", "French"), ("deu", "German"), ("ger", "German"),
    ("ita", "Italian"), ("jpn", "Japanese"), ("kor", "Korean"), ("por", "Portuguese"), ("rus", "Russian"),
    ("spa", "Spanish"),
])
def test_iso_639_2_and_3_codes(code, name):
    assert resolve_language(code) == name


def test_every_language_has_its_two_and_three_letter_codes():
    for name in SUPPORTED_LANGUAGES:
        codes = {code for code, named in LANGUAGE_CODES.items() if named == name}
        assert any(len(code) == 3 for code in codes), name
        assert name == "Cantonese" or any(len(code) == 2 for code in codes), name  # Cantonese has no 639-1 code


@pytest.mark.parametrize("bad", ["Klingon", "xx", "zh-", "chinese!", "zhx", "ch"])
def test_unsupported_language_names_itself_and_the_choices(bad):
    with pytest.raises(InvalidRequest) as error:
        resolve_language(bad)
    message = str(error.value)
    assert repr(bad.strip()) in message
    assert "Chinese (zh, zho, chi, cmn)" in message and "Cantonese (yue)" in message and "Spanish (es, spa)" in message
