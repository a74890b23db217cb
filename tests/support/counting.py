"""A stand-in for a function that counts its calls: which path a test's pass took, and how often."""
from __future__ import annotations

from collections.abc import Callable


class Counting:
    """Calls ``function`` with the same arguments, counting the calls (those whose arguments ``where`` accepts,
    when given)."""

    def __init__(self, function, where: Callable[..., bool] | None = None) -> None:
        self.function, self.where, self.calls = function, where, 0

    def __call__(self, *args):
        if self.where is None or self.where(*args):
            self.calls += 1
        return self.function(*args)
