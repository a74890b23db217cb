"""The one exception type that becomes a per-request HTTP 400 / INVALID_ARG."""


class InvalidRequest(ValueError):
    """A request the service refuses. ``str(exc)`` is the plain message the
    client sees: it names the problem and, where there is one, the limit."""
