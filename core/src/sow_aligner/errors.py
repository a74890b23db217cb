"""The one exception type that becomes a per-request HTTP 400 / INVALID_ARG."""


class InvalidRequest(ValueError):
    """A request the service refuses. ``str(exc)`` is the plain message the
    client sees: it names the problem and, where there is one, the limit.
    ``audio_seconds`` is the clip's duration once the AUDIO tensor has been
    read as one clip (0 before): the model's log line shows it."""

    audio_seconds: float = 0.0
