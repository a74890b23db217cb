"""qwen-asr's monotonic timestamp repair, in O(n log n) instead of O(n²).

``fix_timestamp(values)`` returns exactly what
``Qwen3ForceAlignProcessor().fix_timestamp(np.asarray(values))`` (qwen-asr
0.0.6) returns, for every input that call accepts:

1. Keep one longest non-decreasing subsequence (LIS), chosen as qwen-asr's
   quadratic loop chooses it: its end is the first index with the maximal
   length, and each element's predecessor is the *smallest* earlier index
   ``j`` with ``data[j] <= data[i]`` among those with the maximal length.
2. Replace every maximal run of elements outside that subsequence: a run of at
   most 2 takes the value of its nearer kept neighbour (the left one on a
   tie, the only one at either end of the sequence); a longer run is linearly
   interpolated between its kept neighbours (or copies the only one).
3. Truncate every value with ``int()``.

The subsequence is found with the classic per-length bookkeeping. Let the
"level" of an element be the length of the longest non-decreasing subsequence
ending at it. Elements of one level, in index order, have strictly decreasing
values (were ``data[j] <= data[k]`` for ``j < k`` on one level, ``k`` would
extend ``j``'s subsequence and sit one level higher). So the smallest valid
predecessor of ``i`` at level ``L`` is the first element of level ``L`` whose
value is ``<= data[i]``: one binary search over that level's values, and the
level itself is one binary search over the last (smallest) value of each
level. NaN compares false with everything, so a NaN is a subsequence of
length 1 on its own and never anyone's predecessor, as in the original.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np


def fix_timestamp(values: Sequence[float] | np.ndarray) -> list[int]:
    """qwen-asr's ``fix_timestamp`` on ``values`` (milliseconds), in O(n log n).

    ``values`` is a 1-D numpy array or a sequence of ints or floats; it is
    read through ``np.asarray(values).tolist()``, as the original reads it.
    Returns a new list of ints, one per value. An empty input gives ``[]``
    (the original raises ``ValueError`` there). A kept NaN or infinity raises
    what ``int()`` raises on it, as in the original.
    """
    data = np.asarray(values).tolist()
    normal = _lis_mask(data)
    return [int(value) for value in _fill_anomalies(data, normal)]


def _lis_mask(data: list) -> list[bool]:
    """Which indices lie on qwen-asr's choice of longest non-decreasing subsequence."""
    n = len(data)
    parent = [-1] * n
    tails: list = []  # tails[L]: smallest (= latest) value on level L + 1
    level_keys: list[list] = []  # per level, the negated values in index order (increasing)
    level_indices: list[list[int]] = []  # per level, the indices in index order
    best_length, best_end = 0, -1
    for i, value in enumerate(data):
        if value != value:  # NaN: a subsequence on its own; joins no level, extends nothing
            length = 1
        else:
            level = bisect_right(tails, value)  # predecessors sit on levels < level
            if level > 0:
                prev_keys = level_keys[level - 1]
                parent[i] = level_indices[level - 1][bisect_left(prev_keys, -value)]
            if level == len(tails):
                tails.append(value)
                level_keys.append([])
                level_indices.append([])
            else:
                tails[level] = value
            level_keys[level].append(-value)
            level_indices[level].append(i)
            length = level + 1
        if length > best_length:
            best_length, best_end = length, i
    normal = [False] * n
    index = best_end
    while index != -1:
        normal[index] = True
        index = parent[index]
    return normal


def _fill_anomalies(data: list, normal: list[bool]) -> list:
    """Replace each run of non-``normal`` values as qwen-asr does (see module doc)."""
    n = len(data)
    result = list(data)
    i = 0
    while i < n:
        if normal[i]:
            i += 1
            continue
        j = i
        while j < n and not normal[j]:
            j += 1
        # Runs are maximal, so the nearest kept neighbours are i - 1 and j.
        left = data[i - 1] if i > 0 else None
        right = data[j] if j < n else None
        count = j - i
        for k in range(i, j):
            if left is None:
                result[k] = right
            elif right is None:
                result[k] = left
            elif count <= 2:
                result[k] = left if k - (i - 1) <= j - k else right
            else:
                result[k] = left + (right - left) / (count + 1) * (k - i + 1)
        i = j
    return result
