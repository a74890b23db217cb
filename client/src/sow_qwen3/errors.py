"""The client's typed errors: what went wrong decides the exception and the CLI's exit code.

Every error keeps the message it was raised with, including the server's own
message when the server refused the request.
"""
from __future__ import annotations


class AlignError(Exception):
    """Base class; ``exit_code`` is what ``sow-qwen3`` exits with."""

    exit_code = 1


class BadInputError(AlignError):
    """The request cannot succeed as sent: audio too long, too large or not audio;
    lyrics empty or unreadable; an object that does not exist; an unsupported language."""

    exit_code = 3


class AuthError(AlignError):
    """A credential was refused: the server's API key, or the storage's access key."""

    exit_code = 4


class ServerUnavailableError(AlignError):
    """Nothing answered, the model is not ready, or the queue is full: try again later."""

    exit_code = 5


class ServerError(AlignError):
    """The server failed while aligning (HTTP 500 / gRPC INTERNAL)."""

    exit_code = 6
