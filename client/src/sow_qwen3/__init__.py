"""Client for the Qwen3-ForcedAligner Triton service: song audio + known lyrics -> LRC or JSON.

``Client.align`` fetches the audio (local path, http(s) URL or s3://bucket/key
on Cloudflare R2 / any S3 store), checks it, decodes it to 16 kHz mono, asks
the server to time each lyric line and renders the result. ``sow-qwen3`` is
the command line on top of it (``sow_qwen3.cli``).
"""
from sow_qwen3_contract.response import Line, Skipped, SongQuality

from .client import AlignResult, Client, Health, VoiceActivity
from .errors import AlignError, AuthError, BadInputError, ServerError, ServerUnavailableError
from .settings import S3Settings

__all__ = [
    "AlignError", "AlignResult", "AuthError", "BadInputError", "Client", "Health", "Line", "S3Settings", "Skipped",
    "ServerError", "ServerUnavailableError", "SongQuality", "VoiceActivity",
]
