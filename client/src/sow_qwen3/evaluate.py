"""``sow-qwen3 eval``: line-start errors of one timing (hypothesis) against another (reference).

Texts are compared with whitespace collapsed and case folded. Lines are
paired in the files' order (``read_timing`` keeps it) when both files have the
same texts in the same order, whatever their times. Otherwise (other counts or
texts) they are paired by a sequence alignment of the whole texts: the equal
runs of ``difflib.SequenceMatcher``'s opcodes pair line by line, so a repeated
chorus line pairs with its own occurrence; inserted and deleted lines stay
unpaired (a replaced run holds no text of the other side, so it stays unpaired
too), and the report's note counts them. Errors are
hypothesis minus reference, in seconds, over the paired lines; ``within_*``
are the fractions of paired lines whose absolute error is at most 0.3 s (the
lyrics-alignment benchmark tolerance) and 1.0 s.

Folders (``evaluate_folders``): the ``.lrc`` or ``.json`` files of two folders
pair by stem (or by the names of an ``align-batch`` manifest, whose outputs are
``DIR/<name>.lrc`` or ``.json``); the pooled numbers are over all paired lines
of all songs.
"""
from __future__ import annotations

import difflib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError
from .files import ORIGINAL_TAG, TIMING_KINDS
from .timings import TimingFile, read_timing


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

    def summary(self) -> dict:
        """The totals over the paired lines (at least one)."""
        errors = self.errors()
        return {
            "lines": len(self.pairs),
            "mean_abs_error_s": round(statistics.fmean(errors), 3),
            "median_abs_error_s": round(statistics.median(errors), 3),
            "max_abs_error_s": round(max(errors), 3),
            "within_0_3_s": round(sum(e <= 0.3 for e in errors) / len(errors), 4),
            "within_1_0_s": round(sum(e <= 1.0 for e in errors) / len(errors), 4),
        }

    def data(self) -> dict:
        """The ``--json`` document: the totals and each paired line."""
        return {
            **self.summary(),
            "per_line": [{"index": p.index, "text": p.text, "reference": round(p.reference, 3),
                          "hypothesis": round(p.hypothesis, 3), "error_s": round(p.error, 3)} for p in self.pairs],
        }


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def aligned_pairs(hypothesis: list[str], reference: list[str]) -> list[tuple[int, int]]:
    """(hypothesis index, reference index) of every line in an equal run of the alignment of the two texts."""
    matcher = difflib.SequenceMatcher(None, hypothesis, reference, autojunk=False)
    return [(h, r) for tag, h1, h2, r1, _ in matcher.get_opcodes() if tag == "equal"
            for h, r in zip(range(h1, h2), range(r1, r1 + h2 - h1))]


def evaluate(hypothesis: TimingFile, reference: TimingFile) -> EvalReport:
    """Pair the lines (see the module docstring) and keep their starts.

    Raises BadInputError when no line pairs.
    """
    hyp = [_key(line.text) for line in hypothesis.lines]
    ref = [_key(line.text) for line in reference.lines]
    if hyp == ref:
        pairs, note = list(zip(range(len(ref)), range(len(ref)))), ""
    else:
        pairs = aligned_pairs(hyp, ref)
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


class FolderError(ValueError):
    """A folder of timings that cannot be used as it is (exit 2); the message names it."""


@dataclass(frozen=True)
class SongEval:
    name: str
    hypothesis: Path
    reference: Path
    report: EvalReport | None  # None when the song could not be evaluated
    error: str  # "" when evaluated, else why not


@dataclass(frozen=True)
class FolderEval:
    """Every song of two folders: evaluated (or why not), and the names found on one side only."""

    songs: tuple[SongEval, ...]
    missing_hypothesis: tuple[str, ...]
    missing_reference: tuple[str, ...]

    def evaluated(self) -> list[SongEval]:
        return [song for song in self.songs if song.report is not None]

    def pooled(self) -> EvalReport:
        """One report over all paired lines of all evaluated songs."""
        return EvalReport(tuple(pair for song in self.evaluated() for pair in song.report.pairs), "")

    def data(self) -> dict:
        """The ``--json`` document: per song, pooled, missing and not evaluated."""
        return {
            "songs": [{"name": s.name, "hypothesis": str(s.hypothesis), "reference": str(s.reference),
                       "note": s.report.note, **s.report.data()} for s in self.evaluated()],
            "pooled": {"songs": len(self.evaluated()), **self.pooled().summary()},
            "missing_hypothesis": list(self.missing_hypothesis),
            "missing_reference": list(self.missing_reference),
            "not_evaluated": [{"name": s.name, "hypothesis": str(s.hypothesis), "reference": str(s.reference),
                               "error": s.error} for s in self.songs if s.report is None],
        }


def timing_files(folder: Path) -> dict[str, Path]:
    """Stem -> the timing file of that song in ``folder``: ``NAME.json`` where there is one, else ``NAME.lrc``
    (a reviewed song has both, with the same times). ``NAME.orig.*``, the aligner's output that the review
    keeps, is no song of its own.

    Raises FolderError when ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise FolderError(f"{folder} is not a folder")
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        kind = path.suffix.lower().lstrip(".")
        if not path.is_file() or kind not in TIMING_KINDS or path.stem.endswith(f".{ORIGINAL_TAG}"):
            continue
        rank = TIMING_KINDS.index(kind)
        if path.stem not in found or rank < found[path.stem][0]:
            found[path.stem] = (rank, path)
    return {stem: path for stem, (_, path) in found.items()}


def evaluate_folders(hypotheses: Path, references: Path, names: Sequence[str] | None = None) -> FolderEval:
    """Evaluate each song (``names``, default: every stem of either folder, sorted) found in both folders.

    A song on one side only is listed as missing; one whose file is unusable or whose lines do not
    pair is listed with its reason. Raises FolderError as ``timing_files`` does.
    """
    hyp, ref = timing_files(hypotheses), timing_files(references)
    names = sorted(hyp.keys() | ref.keys()) if names is None else list(names)
    songs = [_song(name, hyp[name], ref[name]) for name in names if name in hyp and name in ref]
    return FolderEval(tuple(songs), tuple(n for n in names if n not in hyp), tuple(n for n in names if n not in ref))


def _song(name: str, hypothesis: Path, reference: Path) -> SongEval:
    try:
        return SongEval(name, hypothesis, reference, evaluate(read_timing(hypothesis), read_timing(reference)), "")
    except BadInputError as exc:
        return SongEval(name, hypothesis, reference, None, str(exc))


def folder_table(result: FolderEval) -> str:
    """Per song a heading and its ``report_table``, then one summary row per song and the pooled row."""
    parts = [f"== {s.name}: {s.hypothesis} against {s.reference} ==\n{report_table(s.report)}\n"
             for s in result.evaluated()]
    width = max([len("pooled")] + [len(s.name) for s in result.evaluated()])
    rows = [f"{'song':<{width}}  {'lines':>5}  {'mean':>6}  {'median':>6}  {'max':>6}  {'<=0.3s':>6}  {'<=1.0s':>6}"]
    rows += [_summary_row(s.name, s.report, width) for s in result.evaluated()]
    rows.append(_summary_row("pooled", result.pooled(), width))
    return "".join(parts) + "\n".join(rows) + "\n"


def _summary_row(name: str, report: EvalReport, width: int) -> str:
    data = report.summary()
    return (f"{name:<{width}}  {data['lines']:>5}  {data['mean_abs_error_s']:>6.3f}  {data['median_abs_error_s']:>6.3f}  "
            f"{data['max_abs_error_s']:>6.3f}  {data['within_0_3_s']:>6.0%}  {data['within_1_0_s']:>6.0%}")
