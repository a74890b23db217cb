"""Cross-request batching: which forward passes share a batch, a batch that ran out of memory, and the meeting
point where the request threads of one ``execute()`` hand their passes over together.

Pure (no torch, no Triton): the forward pass and the out-of-memory test are
passed in, so the rules run with fakes in tests.

Guarantees:
* ``budget_groups`` keeps the passes in order, puts each in exactly one group,
  and keeps every group of two or more within the budget (a pass over the
  budget alone runs alone);
* ``run_splitting`` answers every pass once, in order: a group that fails
  (out of memory, or any other error) is split in halves and each half run
  again, down to single passes; a single pass that fails gets its error, and
  its neighbours still get their answers;
* ``Rendezvous`` runs a round as soon as every request thread still working
  waits on the aligner, and never leaves a waiting thread behind (a thread
  that ends without a pass, or with an error, leaves the round).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Call = TypeVar("Call")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class BatchBudget:
    """How much one batched forward pass may hold: audio seconds in all, and padded tokens (batch x longest)."""

    audio_seconds: float
    tokens: int

    def admits(self, sizes: Sequence[tuple[float, int]]) -> bool:
        """Whether passes of these (audio seconds, prompt tokens) fit in one batch."""
        audio = sum(seconds for seconds, _ in sizes)
        padded = len(sizes) * max((tokens for _, tokens in sizes), default=0)
        return audio <= self.audio_seconds and padded <= self.tokens


def budget_groups(sizes: Sequence[tuple[float, int]], budget: BatchBudget) -> list[list[int]]:
    """The indices of ``sizes`` in consecutive groups, each as long as ``budget`` admits (see the module's
    guarantees)."""
    groups: list[list[int]] = []
    for index, size in enumerate(sizes):
        if groups and budget.admits([sizes[i] for i in groups[-1]] + [size]):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def run_splitting(calls: Sequence[Call], forward: Callable[[Sequence[Call]], list[Answer]],
                  out_of_memory: Callable[[Exception], bool],
                  recover: Callable[[], None] = lambda: None) -> list[Answer | Exception]:
    """``forward(calls)``, one answer per call; a failed group runs again in halves (see the guarantees).

    ``recover`` runs after each out-of-memory error (the engine frees its
    cached device memory) before the halves run.
    """
    try:
        return list(forward(calls))
    except Exception as error:  # noqa: BLE001 - a failure is answered per call, after splitting
        if out_of_memory(error):
            recover()
        if len(calls) == 1:
            return [error]
    middle = len(calls) // 2
    return (run_splitting(calls[:middle], forward, out_of_memory, recover)
            + run_splitting(calls[middle:], forward, out_of_memory, recover))


class _Slot(Generic[Answer]):
    def __init__(self) -> None:
        self.done = False
        self.answer: Answer | None = None
        self.error: BaseException | None = None


class Rendezvous(Generic[Call, Answer]):
    """Where ``parties`` request threads hand over their forward passes, each round as one ``run_round`` call.

    A thread calls ``submit(call)`` (it blocks until the round that holds its
    call has run) and ``leave()`` once, when it ends. A round runs, in the
    thread whose arrival completed it, when every thread that has not left
    is waiting in ``submit``. ``run_round`` gets the round's calls and returns
    one answer or exception per call; ``submit`` returns the answer or raises
    the exception. An exception of ``run_round`` itself goes to every call of
    the round.
    """

    def __init__(self, parties: int,
                 run_round: Callable[[list[Call]], Sequence[Answer | BaseException]]) -> None:
        self._condition = threading.Condition()
        self._active = parties
        self._waiting: list[tuple[Call, _Slot[Answer]]] = []
        self._run_round = run_round

    def submit(self, call: Call) -> Answer:
        slot: _Slot[Answer] = _Slot()
        with self._condition:
            self._waiting.append((call, slot))
            self._run_if_complete()
            while not slot.done:
                self._condition.wait()
        if slot.error is not None:
            raise slot.error
        return slot.answer  # type: ignore[return-value]

    def leave(self) -> None:
        with self._condition:
            self._active -= 1
            self._run_if_complete()

    def _run_if_complete(self) -> None:
        """Run the round when every active thread waits (the condition's lock is held)."""
        if not self._waiting or len(self._waiting) < self._active:
            return
        batch, self._waiting = self._waiting, []
        try:
            answers = list(self._run_round([call for call, _ in batch]))
            if len(answers) != len(batch):
                raise RuntimeError(f"a round of {len(batch)} passes got {len(answers)} answers")
        except BaseException as error:  # noqa: BLE001 - the round's failure is every waiting call's answer
            answers = [error] * len(batch)
        for (_, slot), answer in zip(batch, answers):
            if isinstance(answer, BaseException):
                slot.error = answer
            else:
                slot.answer = answer
            slot.done = True
        self._condition.notify_all()
