"""``sow-qwen3``: align one song, a whole catalogue, or check the server.

    sow-qwen3 align SOURCE LYRICS_FILE [--language L] [--format lrc|json] [-o OUT] [--fail-on V] [--plot PNG]
    sow-qwen3 align-batch MANIFEST --out-dir DIR [--concurrency N] [--format lrc|json]
    sow-qwen3 check SOURCE LRC_OR_JSON [--json] [--fail-on V] [--plot PNG]
    sow-qwen3 eval HYPOTHESIS REFERENCE [--json] [--plot PNG [--audio SOURCE]]
    sow-qwen3 eval HYP_DIR REF_DIR [--manifest MANIFEST] [--json]
    sow-qwen3 review MANIFEST --out-dir DIR | SOURCE LRC_OR_JSON [--host H] [--port P] [--no-browser]
    sow-qwen3 health

Every command takes --url, --protocol, --api-key and --timeout; each falls back
to its SOW_QWEN3_* environment variable (see ``Client``). Results go to stdout
or the output file; messages go to stderr.

Exit codes (``EXIT_CODES``): 0 success; 1 some songs of a batch failed (or an
unexpected error); 2 usage error; 3 bad input; 4 authentication refused;
5 server unavailable or not ready; 6 the server failed; 7 the song's quality
verdict is as bad as --fail-on asks to fail on (the output is still written);
130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from sow_qwen3_contract.quality import FAIL, REVIEW, at_least
from sow_qwen3_contract.tensors import SAMPLE_RATE

from .batch import ManifestError, read_manifest, run_batch
from .client import FORMATS, Client
from .errors import AlignError, AuthError, BadInputError, ServerError, ServerUnavailableError
from .files import read_lyrics, write_atomically
from .settings import PROTOCOLS

EXIT_OK = 0
EXIT_SONGS_FAILED = 1
EXIT_USAGE = 2
EXIT_QUALITY = 7
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_SONGS_FAILED: "some songs of a batch failed (or an unexpected error)",
    EXIT_USAGE: "usage error: bad arguments, unreadable manifest",
    BadInputError.exit_code: "bad input: audio too long, too large or not audio; lyrics empty; object not found",
    AuthError.exit_code: "authentication refused: the server's API key or the storage credentials",
    ServerUnavailableError.exit_code: "server unavailable, not ready, or its queue is full",
    ServerError.exit_code: "the server failed while aligning",
    EXIT_QUALITY: "the quality verdict is at least what --fail-on names (output still written)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
}


class UsageError(Exception):
    """Arguments that parse but cannot be used (exit 2)."""


def _client(args: argparse.Namespace) -> Client:
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be positive; got {args.timeout:g}")
    try:
        return Client(url=args.url, protocol=args.protocol, api_key=args.api_key, timeout=args.timeout)
    except ValueError as exc:  # a bad SOW_QWEN3_* value
        raise UsageError(str(exc)) from None


def cmd_align(args: argparse.Namespace) -> int:
    lyrics = read_lyrics(args.lyrics_file)
    client = _client(args)
    result = client.align(args.source, lyrics, language=args.language, format=args.format,
                          keep_audio=bool(args.plot))
    quality = result.quality
    if args.output:
        try:
            write_atomically(Path(args.output), result.content)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {result.line_count} timed lines ({result.duration_seconds:.1f} s of audio) to {args.output}; "
              f"quality: {_quality_text(quality, result.line_count)}", file=sys.stderr)
    else:
        sys.stdout.write(result.content)
        sys.stdout.flush()
    if args.plot:
        from .pictures import alignment_picture

        if quality.mean_voiced_fraction is None:  # the VAD was not run: the picture goes without voiced regions
            print("sow-qwen3: the plot shows no voiced regions: the server did not measure voice activity",
                  file=sys.stderr)
        alignment_picture(Path(args.plot), result, result.voiced or ())
    code = _verdict_exit(quality.verdict, args.fail_on)
    if code:
        print(f"sow-qwen3: quality {_quality_text(quality, result.line_count)}: at least --fail-on {args.fail_on}",
              file=sys.stderr)
    return code


def _quality_text(quality, lines: int) -> str:
    voiced = "not measured" if quality.mean_voiced_fraction is None else f"{quality.mean_voiced_fraction:.2f}"
    return f"{quality.verdict} (mean voiced fraction {voiced}, {quality.flagged_lines} of {lines} lines flagged)"


def _verdict_exit(verdict: str, fail_on: str | None) -> int:
    return EXIT_QUALITY if fail_on and at_least(verdict, fail_on) else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from .check import check_timing, report_data, report_table
    from .formats import to_json
    from .timings import read_timing

    timing = read_timing(args.timing_file)
    client = _client(args)
    audio, _ = client.load(args.source)
    activity = client.voice_activity(audio)
    report = check_timing(timing, activity.segments, audio.size / SAMPLE_RATE, client.quality_thresholds())
    sys.stdout.write(to_json(report_data(report)) if args.json else report_table(report))
    if args.plot:
        from .pictures import check_picture

        check_picture(Path(args.plot), report, audio, activity.segments, Path(args.timing_file).name)
    return _verdict_exit(report.verdict, args.fail_on)


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, report_table
    from .formats import to_json
    from .timings import read_timing

    if args.audio and not args.plot:
        raise UsageError("--audio only serves --plot")
    folders = [Path(args.hypothesis).is_dir(), Path(args.reference).is_dir()]
    if any(folders) or args.manifest:
        if not all(folders) or args.plot:
            raise UsageError("folders: HYPOTHESIS and REFERENCE must both be folders, and --plot serves one song")
        return _eval_folders(args)
    report = evaluate(read_timing(args.hypothesis), read_timing(args.reference))
    if report.note:
        print(f"sow-qwen3 eval: {report.note}", file=sys.stderr)
    sys.stdout.write(to_json(report.data()) if args.json else report_table(report))
    if args.plot:
        from .pictures import eval_picture

        audio, segments = None, ()
        if args.audio:
            client = _client(args)
            audio = client.load(args.audio)[0]
            segments = client.voice_activity(audio).segments
        eval_picture(Path(args.plot), report, audio, segments)
    return EXIT_OK


def _eval_folders(args: argparse.Namespace) -> int:
    """``eval`` of two folders: songs on one side only are listed; exit 3 when some song could not be evaluated."""
    from .evaluate import FolderError, evaluate_folders, folder_table
    from .formats import to_json

    try:
        names = [song.name for song in read_manifest(Path(args.manifest), "")] if args.manifest else None
        result = evaluate_folders(Path(args.hypothesis), Path(args.reference), names)
    except (ManifestError, FolderError) as exc:
        raise UsageError(str(exc)) from None
    for side, missing in (("hypothesis", result.missing_hypothesis), ("reference", result.missing_reference)):
        if missing:
            print(f"sow-qwen3 eval: no {side} for {len(missing)} songs: {', '.join(missing)}", file=sys.stderr)
    for song in result.songs:
        if song.error or song.report.note:
            print(f"sow-qwen3 eval: {song.name}: {song.error or song.report.note}", file=sys.stderr)
    if not result.evaluated():
        raise BadInputError(f"no song of {args.hypothesis} could be evaluated against {args.reference}")
    sys.stdout.write(to_json(result.data()) if args.json else folder_table(result))
    return BadInputError.exit_code if len(result.evaluated()) < len(result.songs) else EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    client = _client(args)
    health = client.health()
    state = f"live: {'yes' if health.live else 'no'}, model ready: {'yes' if health.ready else 'no'}"
    print(f"{client.url} ({client.protocol}) {state}")
    if not health.ready:
        print(f"sow-qwen3: not ready: {health.detail}", file=sys.stderr)
        return ServerUnavailableError.exit_code
    return EXIT_OK


def cmd_align_batch(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1; got {args.concurrency}")
    try:
        songs = read_manifest(Path(args.manifest), args.language)
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    summary = run_batch(_client(args), songs, Path(args.out_dir), concurrency=args.concurrency, format=args.format,
                        stream=sys.stderr)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SONGS_FAILED if summary.failed else EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from .review.app import entries, serve

    if (args.out_dir is None) != (args.timing_file is not None):
        raise UsageError("review takes MANIFEST --out-dir DIR, or SOURCE LRC_OR_JSON (one song)")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0 to 65535; got {args.port}")
    try:
        songs = entries(args.target, args.timing_file, args.out_dir, args.language, sys.stderr)
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    try:
        serve(songs, _client(args), host=args.host, port=args.port, browser=not args.no_browser,
              language=args.language)
    except OSError as exc:  # the address is taken or cannot be bound
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server (defaults from the environment)")
    server.add_argument("--url", help="Triton host:port, or http://, https:// or grpc://host:port to choose the "
                                      "protocol too (SOW_QWEN3_TRITON_URL; default 127.0.0.1:8000)")
    server.add_argument("--protocol", choices=PROTOCOLS,
                        help="http or grpc (SOW_QWEN3_PROTOCOL; default: the URL's scheme, else http)")
    server.add_argument("--api-key", help="the server's API key (SOW_QWEN3_API_KEY)")
    server.add_argument("--timeout", type=float, help="seconds per request (SOW_QWEN3_TIMEOUT; default 900)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress and tracebacks to stderr")

    parser = argparse.ArgumentParser(
        prog="sow-qwen3", description="Time-sync known lyrics to a song's audio with the Qwen3-ForcedAligner service.",
        epilog="exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items()),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    align = commands.add_parser("align", parents=[common], help="align one song; print or write LRC/JSON")
    align.add_argument("source", metavar="SOURCE", help="audio: local path, http(s):// URL or s3://bucket/key")
    align.add_argument("lyrics_file", metavar="LYRICS_FILE", help="UTF-8 lyrics, one lyric line per line (- = stdin)")
    _output_options(align)
    align.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    _verdict_options(align)
    align.set_defaults(run=cmd_align)

    batch = commands.add_parser(
        "align-batch", parents=[common], help="align every song of a manifest; resumes where it stopped",
        description="MANIFEST is CSV or TSV, one row per song: source, lyrics file (relative to the manifest), "
                    "optional language, optional output name. A header row naming these columns is optional. "
                    "Songs whose output already exists are skipped.",
    )
    batch.add_argument("manifest", metavar="MANIFEST")
    batch.add_argument("--out-dir", required=True, metavar="DIR", help="one output file per song")
    batch.add_argument("--concurrency", type=int, default=4, metavar="N",
                       help="songs in flight at once (default 4); lets the server batch them")
    _output_options(batch)
    batch.set_defaults(run=cmd_align_batch)

    check = commands.add_parser(
        "check", parents=[common], help="judge an existing LRC or JSON timing against its audio (server's VAD)",
        description="Each line's window ([start, end] for our JSON; for LRC [start, min(next start, start + 3 s)]) "
                    "is measured with the server's silero_vad; flags unvoiced, zero_length and collapsed and the "
                    "pass/review/fail verdict follow the server's rules and thresholds.",
    )
    check.add_argument("source", metavar="SOURCE", help="audio: local path, http(s):// URL or s3://bucket/key")
    check.add_argument("timing_file", metavar="LRC_OR_JSON", help="the timing to judge")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _verdict_options(check)
    check.set_defaults(run=cmd_check)

    evaluation = commands.add_parser(
        "eval", parents=[common], help="compare a timing (hypothesis) with a reference timing",
        description="Line-start errors, hypothesis minus reference. Lines pair in the files' order; when the "
                    "lyrics differ they pair by an alignment of the texts, and stderr says so. Two folders: their "
                    ".lrc/.json files pair by stem (or by the names of an align-batch --manifest), one table per "
                    "song and a pooled one; songs on one side only are listed. Needs no server unless --audio is given.",
    )
    evaluation.add_argument("hypothesis", metavar="HYPOTHESIS", help="LRC or our JSON, or a folder of them")
    evaluation.add_argument("reference", metavar="REFERENCE", help="LRC or our JSON, or a folder of them")
    evaluation.add_argument("--manifest", metavar="MANIFEST",
                            help="with folders: evaluate the songs of this align-batch manifest (DIR/<name>.lrc|json)")
    evaluation.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluation.add_argument("--plot", metavar="PNG", help="draw reference and hypothesis to this PNG file")
    evaluation.add_argument("--audio", metavar="SOURCE", help="with --plot: add the song's waveform and voiced regions")
    evaluation.set_defaults(run=cmd_eval)

    review = commands.add_parser(
        "review", parents=[common], help="fix flagged lines in the browser: a local review page",
        description="Serves a page on this machine to listen to each song, see its flagged lines and fix them "
                    "(nudge, tap, drag, re-align a span), judged live with the server's rules; saving writes "
                    "NAME.lrc (and NAME.json) and keeps the aligner's output as NAME.orig.*. Prints the page's "
                    "URL, which holds this run's access token.",
    )
    review.add_argument("target", metavar="MANIFEST_OR_SOURCE",
                        help="the align-batch manifest (with --out-dir), or one song's audio source")
    review.add_argument("timing_file", metavar="LRC_OR_JSON", nargs="?", help="one song: its NAME.lrc or NAME.json")
    review.add_argument("--out-dir", metavar="DIR", help="the align-batch output folder of the manifest's songs")
    review.add_argument("--language", help="language to re-align in (default: the JSON's, else Chinese)")
    review.add_argument("--host", default="127.0.0.1", type=_listen_address,
                        help="address to listen on (default 127.0.0.1, this machine only)")
    review.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    review.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    review.set_defaults(run=cmd_review)

    health = commands.add_parser("health", parents=[common], help="is the server live and the model ready?")
    health.set_defaults(run=cmd_health)
    return parser


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", default="Chinese", help="language of the lyrics: name or code (default Chinese)")
    parser.add_argument("--format", choices=FORMATS, default="lrc", help="output format (default lrc)")


def _verdict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fail-on", choices=(REVIEW, FAIL),
                        help=f"exit {EXIT_QUALITY} when the verdict is this or worse (review: review or fail)")
    parser.add_argument("--plot", metavar="PNG", help="also draw the timeline to this PNG file (needs sow-qwen3[plot])")


def _listen_address(value: str) -> str:
    from .review.server import listen_address

    try:
        return listen_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"sow-qwen3: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AlignError as exc:
        print(f"sow-qwen3: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sow-qwen3: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen failure: say what, and where with -v
        if args.verbose:
            logging.getLogger("sow_qwen3").exception("unexpected error")
        print(f"sow-qwen3: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_SONGS_FAILED


if __name__ == "__main__":
    sys.exit(main())
