"""How long a song may be: the default limit and the ceiling an operator may raise it to.

The server refuses audio past its ``max_audio_seconds`` (config.pbtxt,
SOW_QWEN3_MAX_AUDIO_SECONDS) with HTTP 400; the client refuses it before
sending, with its own SOW_QWEN3_MAX_AUDIO_SECONDS. Both default to
DEFAULT_MAX_AUDIO_SECONDS; neither setting may exceed MAX_AUDIO_SECONDS_CEILING.
"""
from __future__ import annotations

DEFAULT_MAX_AUDIO_SECONDS = 300.0  # 5 minutes: the users' decision
MAX_AUDIO_SECONDS_CEILING = 900.0  # 15 minutes, live recordings; aligned in windows
