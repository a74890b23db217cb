"""sow_aligner.timestamps.fix_timestamp returns what qwen-asr's fix_timestamp returns."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

from sow_aligner.timestamps import fix_timestamp

ORIGINAL = Qwen3ForceAlignProcessor()
MAX_LEN = 300
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def original(values) -> list[int]:
    """qwen-asr 0.0.6's quadratic repair, called as the aligner calls it."""
    return ORIGINAL.fix_timestamp(np.asarray(values))


def assert_same(values) -> None:
    expected = original(values)
    got = fix_timestamp(np.asarray(values))
    assert got == expected
    assert all(type(v) is int for v in got)


# Model-like values: 80 ms steps of a 5000-class head.
steps = st.integers(min_value=0, max_value=4999).map(lambda c: c * 80)
finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False,
                          allow_subnormal=False)  # torch's libraries set flush-to-zero
small_alphabet = st.lists(st.sampled_from([0, 80, 160]), min_size=1, max_size=MAX_LEN)


@st.composite
def sawtooth(draw) -> list[int]:
    """Repeated rising ramps: many equally long non-decreasing subsequences."""
    period = draw(st.integers(min_value=1, max_value=12))
    rise = draw(st.integers(min_value=0, max_value=5))
    length = draw(st.integers(min_value=1, max_value=MAX_LEN))
    offset = draw(st.integers(min_value=0, max_value=period))
    return [((i + offset) % period) * rise * 80 for i in range(length)]


@st.composite
def rising_with_outliers(draw) -> list[int]:
    """What the model emits: a rising sequence with some early/late jumps and runs of them."""
    base = draw(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=MAX_LEN))
    values = list(np.cumsum(base) * 80)
    for _ in range(draw(st.integers(min_value=0, max_value=max(1, len(values) // 4)))):
        start = draw(st.integers(min_value=0, max_value=len(values) - 1))
        run = draw(st.integers(min_value=1, max_value=6))
        jump = draw(st.integers(min_value=0, max_value=4999)) * 80
        values[start:start + run] = [jump] * len(values[start:start + run])
    return [int(v) for v in values]


@SETTINGS
@given(st.lists(steps, min_size=1, max_size=MAX_LEN))
def test_random_model_steps(values):
    assert_same(values)


@SETTINGS
@given(st.lists(st.integers(min_value=-10**6, max_value=10**6), min_size=1, max_size=MAX_LEN))
def test_random_ints(values):
    assert_same(values)


@SETTINGS
@given(st.lists(finite_floats, min_size=1, max_size=MAX_LEN))
def test_random_floats(values):
    assert_same(values)


@SETTINGS
@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, 79.9, 80.0, 1e-9, -3.25]), min_size=1, max_size=MAX_LEN))
def test_float_ties_and_truncation(values):
    assert_same(values)


@SETTINGS
@given(small_alphabet)
def test_many_ties(values):
    assert_same(values)


@SETTINGS
@given(st.lists(steps, min_size=1, max_size=MAX_LEN))
def test_sorted_and_reversed(values):
    assert_same(sorted(values))
    assert_same(sorted(values, reverse=True))


@SETTINGS
@given(sawtooth())
def test_sawtooth(values):
    assert_same(values)


@SETTINGS
@given(rising_with_outliers())
def test_rising_with_outliers(values):
    assert_same(values)


@SETTINGS
@given(st.lists(st.one_of(steps.map(float), st.just(math.nan)), min_size=1, max_size=40))
def test_nan_like_original(values):
    """NaN never extends a subsequence; a kept NaN makes both raise the same error."""
    try:
        expected = original(values)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            fix_timestamp(values)
    else:
        assert fix_timestamp(values) == expected


@SETTINGS
@given(st.lists(steps, min_size=1, max_size=MAX_LEN))
def test_list_input_equals_array_input(values):
    assert fix_timestamp(values) == fix_timestamp(np.asarray(values))


@SETTINGS
@given(st.lists(finite_floats, min_size=1, max_size=MAX_LEN))
def test_result_is_non_decreasing(values):
    result = fix_timestamp(values)
    assert len(result) == len(values)
    assert result == sorted(result)


def test_empty_gives_empty_where_original_raises():
    assert fix_timestamp([]) == []
    assert fix_timestamp(np.array([], dtype=np.float64)) == []
    with pytest.raises(ValueError):
        original([])


@pytest.mark.parametrize("value", [0, 80, 1234.9, -7.5])
def test_single_value(value):
    assert fix_timestamp([value]) == original([value]) == [int(value)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # A run of one between kept 80 and 240: equidistant, so it takes the left value.
        ([80, 9999, 240, 320], [80, 80, 240, 320]),
        # A run of two: each takes its nearer neighbour.
        ([80, 9999, 9999, 400, 480, 560], [80, 80, 400, 400, 480, 560]),
        # A run of three is interpolated (80 + 80 k), then truncated.
        ([80, 9000, 9000, 9000, 400, 480, 560, 640], [80, 160, 240, 320, 400, 480, 560, 640]),
        ([0.5, 9.0, 9.0, 9.0, 2.5, 3.0, 3.5, 4.0], [0, 1, 1, 2, 2, 3, 3, 4]),
        # Leading and trailing runs copy their only neighbour.
        ([9999, 9998, 9997, 80, 160, 240, 0, 0, 0], [80, 80, 80, 80, 160, 240, 240, 240, 240]),
        # Two LIS of length 2 end at index 2 and 3; the first one (0, 2) wins.
        ([500, 100, 600, 200], [500, 500, 600, 600]),
        # Index 2 can follow 0 or 1 (both level 1): the smallest index, 0, is kept.
        ([300, 200, 400], [300, 300, 400]),
    ],
)
def test_worked_examples(values, expected):
    assert original(values) == expected
    assert fix_timestamp(values) == expected


def test_interpolation_rounds_like_original():
    """Same float operations in the same order: 122 / 14 * 7 is 60.99999999999999, not 61."""
    values = [0] + [9999] * 13 + list(range(122, 136))
    result = fix_timestamp(values)
    assert result == original(values)
    assert result[7] == 60


def test_long_model_like_sequence():
    """n = 2000, the size of a long song: rising 80 ms steps with outliers and ties."""
    rng = np.random.default_rng(2026)
    values = np.cumsum(rng.integers(0, 4, 2000)) * 80.0
    outliers = rng.choice(2000, size=200, replace=False)
    values[outliers] = rng.integers(0, 5000, 200) * 80.0
    values[1500:1510] = 0.0
    expected = original(values)
    assert len(set(expected)) > 100  # not a degenerate constant repair
    assert fix_timestamp(values) == expected
