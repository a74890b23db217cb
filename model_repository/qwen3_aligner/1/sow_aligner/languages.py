"""Language hints: the model's language names and the usual ISO codes."""
from __future__ import annotations

import re

from .errors import InvalidRequest

DEFAULT_LANGUAGE = "Chinese"
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "Chinese", "English", "Cantonese", "French", "German", "Italian",
    "Japanese", "Korean", "Portuguese", "Russian", "Spanish",
)
LANGUAGE_CODES: dict[str, str] = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "fr": "French",
    "de": "German", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "pt": "Portuguese", "ru": "Russian", "es": "Spanish",
}
_BY_LOWER_NAME = {name.lower(): name for name in SUPPORTED_LANGUAGES}
_LANGUAGE_TAG = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{2,8})*")


def resolve_language(raw: str | None) -> str:
    """Return the model's name for a language hint.

    Accepts a language name in any case ("chinese"), an ISO code ("zh"), or a
    code with a region or script tag ("zh-CN", "en_US", "zh-Hant"). ``None``
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
    raise InvalidRequest(
        f"unsupported language {raw.strip()!r}; supported: "
        + ", ".join(f"{name} ({code})" for code, name in LANGUAGE_CODES.items())
    )
