"""sow_aligner.batching with fakes: batch budgets, splitting a batch that runs out of memory, and the rendezvous
of request threads (real threads, synchronised by the rendezvous itself and by events, never by sleeps)."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sow_aligner.batching import BatchBudget, Rendezvous, budget_groups, run_splitting

JOIN_S = 30


class OutOfMemory(Exception):
    pass


sizes = st.lists(st.tuples(st.floats(0.1, 400), st.integers(1, 6000)), max_size=40)
budgets = st.builds(BatchBudget, st.floats(1, 5000), st.integers(1, 100_000))


@given(sizes, budgets)
def test_groups_keep_order_cover_every_pass_once_and_fit_the_budget(passes, budget):
    groups = budget_groups(passes, budget)
    assert [index for group in groups for index in group] == list(range(len(passes)))
    for group in groups:
        members = [passes[i] for i in group]
        assert len(group) == 1 or budget.admits(members)
    # Greedy: the next pass did not fit the group before it.
    for before, after in zip(groups, groups[1:]):
        assert not budget.admits([passes[i] for i in before] + [passes[after[0]]])


def test_the_budget_counts_padded_tokens_and_audio():
    budget = BatchBudget(audio_seconds=600, tokens=12_000)
    assert budget.admits([(300, 5800), (300, 100)])  # 2 x 5800 padded
    assert not budget.admits([(300, 5800), (300, 100), (1, 100)])  # 601 s
    assert not budget.admits([(100, 4100), (100, 4100), (100, 4100)])  # 12300 padded tokens


def forward_failing_above(limit: int, seen: list[list[str]]):
    """A forward pass that runs out of memory for batches larger than ``limit`` (and for the call "huge")."""
    def forward(calls):
        seen.append(list(calls))
        if len(calls) > limit or "huge" in calls:
            raise OutOfMemory(f"{len(calls)} calls")
        return [call.upper() for call in calls]
    return forward


@pytest.mark.parametrize("limit", [1, 2, 3, 8])
def test_a_batch_out_of_memory_is_split_until_it_fits(limit):
    seen: list[list[str]] = []
    freed = []
    calls = [f"c{i}" for i in range(8)]
    answers = run_splitting(calls, forward_failing_above(limit, seen), lambda e: isinstance(e, OutOfMemory),
                            lambda: freed.append(1))
    assert answers == [call.upper() for call in calls]
    ran = [batch for batch in seen if len(batch) <= limit]
    assert [call for batch in ran for call in batch] == calls  # each call ran once, in order, in batches that fit
    halves = 8
    while halves > limit:
        halves //= 2
    assert {len(batch) for batch in ran} == {halves}  # halved until they fit, no further
    assert len(freed) == len(seen) - len(ran)


def test_only_the_pass_that_cannot_fit_alone_fails():
    seen: list[list[str]] = []
    answers = run_splitting(["a", "huge", "b", "c"], forward_failing_above(4, seen),
                            lambda e: isinstance(e, OutOfMemory))
    assert answers[0] == "A" and answers[2:] == ["B", "C"]
    assert isinstance(answers[1], OutOfMemory)


def test_another_failure_stays_with_its_own_call_and_frees_nothing():
    freed = []

    def forward(calls):
        if "poison" in calls:
            raise ValueError("broken")
        return [call.upper() for call in calls]

    answers = run_splitting(["a", "b", "poison", "c"], forward, lambda e: isinstance(e, OutOfMemory),
                            lambda: freed.append(1))
    assert answers[:2] == ["A", "B"] and answers[3] == "C" and isinstance(answers[2], ValueError)
    assert freed == []


def run_threads(rendezvous: Rendezvous, work) -> tuple[dict, list[threading.Thread]]:
    results: dict = {}

    def thread_main(name):
        try:
            results[name] = work(name)
        except Exception as error:  # noqa: BLE001 - the test reads each thread's outcome
            results[name] = error
        finally:
            rendezvous.leave()

    threads = [threading.Thread(target=thread_main, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_S)
    assert not any(thread.is_alive() for thread in threads), "a request thread was left waiting"
    return results, threads


def test_threads_meet_in_rounds_and_each_gets_its_own_answer():
    rounds: list[list[str]] = []

    def run_round(calls):
        rounds.append(sorted(calls))
        return [f"{call}!" for call in calls]

    rendezvous = Rendezvous(3, run_round)
    passes = {"a": 1, "b": 3, "c": 2}  # passes per request: later rounds hold the requests still going

    def work(name):
        return [rendezvous.submit(f"{name}{k}") for k in range(passes[name])]

    results, _ = run_threads(rendezvous, work)
    assert results == {"a": ["a0!"], "b": ["b0!", "b1!", "b2!"], "c": ["c0!", "c1!"]}
    assert rounds == [["a0", "b0", "c0"], ["b1", "c1"], ["b2"]]


def test_a_thread_that_fails_before_its_pass_does_not_hold_the_others():
    rounds: list[list[str]] = []
    rendezvous = Rendezvous(3, lambda calls: rounds.append(sorted(calls)) or [c.upper() for c in calls])

    def work(name):
        if name == "b":
            raise ValueError("bad request")
        return rendezvous.submit(name)

    results, _ = run_threads(rendezvous, work)
    assert results["a"] == "A" and results["c"] == "C" and isinstance(results["b"], ValueError)
    assert rounds == [["a", "c"]]


def test_an_answer_that_is_an_error_goes_to_its_own_thread_only():
    rendezvous = Rendezvous(3, lambda calls: [ValueError(c) if c == "b" else c.upper() for c in calls])
    results, _ = run_threads(rendezvous, rendezvous.submit)
    assert results["a"] == "A" and results["c"] == "C"
    assert isinstance(results["b"], ValueError) and str(results["b"]) == "b"


def test_a_failed_round_fails_each_of_its_calls_and_nothing_hangs():
    def run_round(calls):
        raise RuntimeError("device lost")
    rendezvous = Rendezvous(3, run_round)
    results, _ = run_threads(rendezvous, rendezvous.submit)
    assert all(isinstance(result, RuntimeError) for result in results.values())


def test_a_round_waits_for_a_thread_that_is_still_working():
    release = threading.Event()
    rounds: list[list[str]] = []
    rendezvous = Rendezvous(2, lambda calls: rounds.append(sorted(calls)) or list(calls))

    def work(name):
        if name == "slow":
            release.wait(JOIN_S)  # still working (say, its VAD) while "fast" waits on the aligner
        return rendezvous.submit(name)

    results: dict = {}
    threads = [threading.Thread(target=lambda n=n: (results.__setitem__(n, work(n)), rendezvous.leave()))
               for n in ("fast", "slow")]
    threads[0].start()
    threads[1].start()
    assert rounds == []  # nothing ran while "slow" has not arrived
    release.set()
    for thread in threads:
        thread.join(JOIN_S)
    assert rounds == [["fast", "slow"]] and results == {"fast": "fast", "slow": "slow"}
