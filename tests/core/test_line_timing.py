import pytest
from hypothesis import given
from hypothesis import strategies as st

from sow_aligner.line_timing import line_times


def test_lines_take_first_start_and_last_end():
    times = line_times([2, 1], [0.5, 0.9, 1.5], [0.8, 1.2, 2.0], duration=10.0)
    assert times.starts == [0.5, 1.5]
    assert times.ends == [1.2, 2.0]


def test_line_without_units_gets_previous_end_or_zero():
    times = line_times([0, 2, 0, 1], [1.0, 1.5, 3.0], [1.2, 2.5, 3.5], duration=10.0)
    assert times.starts == [0.0, 1.0, 2.5, 3.0]
    assert times.ends == [0.0, 2.5, 2.5, 3.5]


def test_times_are_clamped_to_the_clip():
    times = line_times([1, 1], [-0.3, 4.0], [5.5, 400.0], duration=5.0)
    assert times.starts == [0.0, 4.0]
    assert times.ends == [5.0, 5.0]


def test_counts_must_match_the_units():
    with pytest.raises(ValueError, match="3 units over the lines but 2 starts"):
        line_times([1, 2], [0.0, 1.0], [0.5, 1.5], duration=2.0)


@st.composite
def alignments(draw, monotonic: bool):
    counts = draw(st.lists(st.integers(0, 4), min_size=1, max_size=12))
    total = sum(counts)
    values = draw(st.lists(st.floats(-5, 400, allow_nan=False, allow_subnormal=False), min_size=2 * total, max_size=2 * total))
    if monotonic:
        values.sort()
    duration = draw(st.floats(0.1, 300, allow_subnormal=False))
    return counts, values[0::2], values[1::2], duration


@given(alignments(monotonic=False))
def test_invariants_hold_for_any_unit_times(case):
    counts, starts, ends, duration = case
    times = line_times(counts, starts, ends, duration)
    assert len(times.starts) == len(times.ends) == len(counts)
    assert all(0.0 <= t <= duration for t in times.starts + times.ends)
    assert all(a <= b for a, b in zip(times.starts, times.starts[1:]))
    assert all(s <= e for s, e in zip(times.starts, times.ends))


@given(alignments(monotonic=True))
def test_monotonic_units_map_exactly(case):
    counts, starts, ends, duration = case
    times = line_times(counts, starts, ends, duration)
    clamp = lambda t: min(max(t, 0.0), duration)  # noqa: E731
    cursor, previous_end = 0, 0.0
    for line, count in enumerate(counts):
        if count:
            assert times.starts[line] == clamp(starts[cursor])
            assert times.ends[line] == clamp(ends[cursor + count - 1])
        else:
            assert times.starts[line] == times.ends[line] == previous_end
        cursor += count
        previous_end = times.ends[line]
