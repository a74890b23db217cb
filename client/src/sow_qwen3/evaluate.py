"""``sow-qwen3 eval``: line-start errors of one timing (hypothesis) against another (reference).

Lines are paired in order when both files have the same lines; otherwise
(other counts or texts) they are paired by text in order: the longest run of
matching texts (compared with whitespace collapsed, case folded) as
``difflib.SequenceMatcher`` finds it, and the report says so. Errors are
hypothesis minus reference, in seconds, over the paired lines; ``within_*``
are the fractions of paired lines whose absolute error is at most 0.3 s (the
lyrics-alignment benchmark tolerance) and 1.0 s.
"""
from __future__ import annotations

import difflib
import statistics
from dataclasses import dataclass

from .errors import BadInputError
from .timings import TimingFile


@dataclass(frozen=True)
class PairedLine:
    index: int  # the reference line's index
    text: str
    reference: float
    hypothesis: float

    @property
    def error(self) -> float:
        return self.hypothesis - self.reference


@dataclass(frozen=True)
class EvalReport:
    pairs: tuple[PairedLine, ...]
    note: str  # "" when the lines paired in order, else what differed

    def errors(self) -> list[float]:
        return [abs(pair.error) for pair in self.pairs]

    def data(self) -> dict:
        """The ``--json`` document."""
        errors = self.errors()
        return {
            "lines": len(self.pairs),
            "mean_abs_error_s": round(statistics.fmean(errors), 3),
            "median_abs_error_s": round(statistics.median(errors), 3),
            "max_abs_error_s": round(max(errors), 3),
            "within_0_3_s": round(sum(e <= 0.3 for e in errors) / len(errors), 4),
            "within_1_0_s": round(sum(e <= 1.0 for e in errors) / len(errors), 4),
            "per_line": [{"index": p.index, "text": p.text, "reference": round(p.reference, 3),
                          "hypothesis": round(p.hypothesis, 3), "error_s": round(p.error, 3)} for p in self.pairs],
        }


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def evaluate(hypothesis: TimingFile, reference: TimingFile) -> EvalReport:
    """Pair the lines (see the module docstring) and keep their starts.

    Raises BadInputError when no line pairs.
    """
    hyp = [_key(line.text) for line in hypothesis.lines]
    ref = [_key(line.text) for line in reference.lines]
    if hyp == ref:
        pairs, note = list(zip(range(len(ref)), range(len(ref)))), ""
    else:
        matcher = difflib.SequenceMatcher(None, hyp, ref, autojunk=False)
        pairs = [(block.a + k, block.b + k) for block in matcher.get_matching_blocks() for k in range(block.size)]
        differ = (f"{len(hyp)} hypothesis lines, {len(ref)} reference lines" if len(hyp) != len(ref)
                  else "the same number of lines but different texts")
        note = (f"the lyrics differ ({differ}); {len(pairs)} lines paired by text in order, "
                f"{len(hyp) - len(pairs)} hypothesis and {len(ref) - len(pairs)} reference lines left out")
    if not pairs:
        raise BadInputError(f"no line of {hypothesis.name} has the text of a line of {reference.name}")
    return EvalReport(tuple(PairedLine(r, reference.lines[r].text, reference.lines[r].start,
                                       hypothesis.lines[h].start) for h, r in pairs), note)


def report_table(report: EvalReport) -> str:
    """A table a person reads: one row per paired line, then the totals."""
    data = report.data()
    rows = [f"{'#':>3}  {'reference':>9}  {'hypothesis':>10}  {'error':>7}  text"]
    for line in data["per_line"]:
        rows.append(f"{line['index']:>3}  {line['reference']:>9.2f}  {line['hypothesis']:>10.2f}  "
                    f"{line['error_s']:>+7.2f}  {line['text']}")
    rows.append(f"{data['lines']} lines: mean |error| {data['mean_abs_error_s']:.3f} s, median "
                f"{data['median_abs_error_s']:.3f} s, max {data['max_abs_error_s']:.3f} s; within 0.3 s "
                f"{data['within_0_3_s']:.0%}, within 1.0 s {data['within_1_0_s']:.0%}")
    return "\n".join(rows) + "\n"
