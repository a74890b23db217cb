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


@pytest.mark.parametrize("bad", ["Klingon", "xx", "zh-", "chinese!", "cmn"])
def test_unsupported_language_names_itself_and_the_choices(bad):
    with pytest.raises(InvalidRequest) as error:
        resolve_language(bad)
    message = str(error.value)
    assert repr(bad.strip()) in message
    assert "Chinese (zh)" in message and "Spanish (es)" in message
