"""A stand-in for a function that counts its calls: which path a test's pass took, and how often."""
from __future__ import annotations


class Counting:
    """Calls ``function`` with the same arguments, counting the calls."""

    def __init__(self, function) -> None:
        self.function, self.calls = function, 0

    def __call__(self, *args):
        self.calls += 1
        return self.function(*args)
