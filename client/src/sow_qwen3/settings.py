"""Client settings and their ``SOW_QWEN3_*`` environment variables, in one place."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_URL = "127.0.0.1:8000"
DEFAULT_TIMEOUT = 900.0  # seconds; a 5-minute song behind a queue of others takes minutes on CPU
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024  # no 5-minute song needs more, even as 24-bit WAV
PROTOCOLS = ("http", "grpc")


@dataclass(frozen=True)
class S3Settings:
    """Where ``s3://`` sources live: Cloudflare R2 or any S3-compatible store.

    Empty fields fall back to boto3's own configuration (AWS_* variables, profiles).
    """

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    bucket: str | None = None  # used by s3:///key (no bucket in the URL)
    region: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Settings:
        """SOW_QWEN3_R2_ENDPOINT_URL, _ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _BUCKET and _REGION."""
        def get(name: str) -> str | None:
            return env.get(f"SOW_QWEN3_R2_{name}") or None

        return cls(get("ENDPOINT_URL"), get("ACCESS_KEY_ID"), get("SECRET_ACCESS_KEY"), get("BUCKET"), get("REGION"))

    def __repr__(self) -> str:  # never print the secret
        secret = "***" if self.secret_access_key else None
        return (f"S3Settings(endpoint_url={self.endpoint_url!r}, access_key_id={self.access_key_id!r}, "
                f"secret_access_key={secret!r}, bucket={self.bucket!r}, region={self.region!r})")


def env_text(name: str, env: Mapping[str, str] = os.environ) -> str | None:
    """``SOW_QWEN3_<name>``, or None when unset or empty."""
    return env.get(f"SOW_QWEN3_{name}") or None


def env_float(name: str, default: float, env: Mapping[str, str] = os.environ) -> float:
    """``SOW_QWEN3_<name>`` as a positive number, else ``default``; ValueError names a bad value."""
    text = env_text(name, env)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"SOW_QWEN3_{name}={text!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"SOW_QWEN3_{name} must be positive; got {text!r}")
    return value
