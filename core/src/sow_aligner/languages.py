"""Language hints: the model's language names and their ISO 639 codes.

The one table of what the service accepts; the server returns the name it
resolved (output LANGUAGE_NAME), so clients record it without a copy of this.
"""
from __future__ import annotations

import re

from .errors import InvalidRequest

DEFAULT_LANGUAGE = "Chinese"
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "Chinese", "English", "Cantonese", "French", "German", "Italian",
    "Japanese", "Korean", "Portuguese", "Russian", "Spanish",
)
# ISO 639-1, 639-2 (terminology and bibliographic) and 639-3 codes of each language.
LANGUAGE_CODES: dict[str, str] = {
    "zh": "Chinese", "zho": "Chinese", "chi": "Chinese", "cmn": "Chinese",
    "en": "English", "eng": "English",
    "yue": "Cantonese",
    "fr": "French", "fra": "French", "fre": "French",
    "de": "German", "deu": "German", "ger": "German",
    "it": "Italian", "ita": "Italian",
    "ja": "Japanese", "jpn": "Japanese",
    "ko": "Korean", "kor": "Korean",
    "pt": "Portuguese", "por": "Portuguese",
    "ru": "Russian", "rus": "Russian",
    "es": "Spanish", "spa": "Spanish",
}
_BY_LOWER_NAME = {name.lower(): name for name in SUPPORTED_LANGUAGES}
_CHOICES = ", ".join(
    f"{name} ({', '.join(code for code, named in LANGUAGE_CODES.items() if named == name)})"
    for name in SUPPORTED_LANGUAGES
)
_LANGUAGE_TAG = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{2,8})*")


def resolve_language(raw: str | None) -> str:
    """Return the model's name for a language hint.

    Accepts a language name in any case ("chinese"), an ISO 639-1, 639-2 or
    639-3 code ("zh", "zho", "cmn", "yue"), or a code with a region or script
    tag ("zh-CN", "en_US", "zh-Hant", "cmn-Hans"). ``None``
    or a blank string means DEFAULT_LANGUAGE. Anything else raises
    InvalidRequest listing what is supported.
    """
    if raw is None or not raw.strip():
        return DEFAULT_LANGUAGE
    key = raw.strip().lower()
    if key in _BY_LOWER_NAME:
        return _BY_LOWER_NAME[key]
    tag = _LANGUAGE_TAG.fullmatch(key)
    if tag and tag.group(1) in LANGUAGE_CODES:
        return LANGUAGE_CODES[tag.group(1)]
    raise InvalidRequest(f"unsupported language {raw.strip()!r}; supported: {_CHOICES}")
