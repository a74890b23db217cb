"""``sow-qwen3``: align one song, a whole catalogue, or check the server.

    sow-qwen3 align SOURCE LYRICS_FILE [--language L] [--format lrc|json] [-o OUT]
    sow-qwen3 align-batch MANIFEST --out-dir DIR [--concurrency N] [--format lrc|json]
    sow-qwen3 health

Every command takes --url, --protocol, --api-key and --timeout; each falls back
to its SOW_QWEN3_* environment variable (see ``Client``). Results go to stdout
or the output file; messages go to stderr.

Exit codes (``EXIT_CODES``): 0 success; 1 some songs of a batch failed (or an
unexpected error); 2 usage error; 3 bad input; 4 authentication refused;
5 server unavailable or not ready; 6 the server failed; 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .batch import ManifestError, read_manifest, run_batch
from .client import FORMATS, Client
from .errors import AlignError, AuthError, BadInputError, ServerError, ServerUnavailableError
from .files import read_lyrics, write_atomically
from .settings import PROTOCOLS

EXIT_OK = 0
EXIT_SONGS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_SONGS_FAILED: "some songs of a batch failed (or an unexpected error)",
    EXIT_USAGE: "usage error: bad arguments, unreadable manifest",
    BadInputError.exit_code: "bad input: audio too long, too large or not audio; lyrics empty; object not found",
    AuthError.exit_code: "authentication refused: the server's API key or the storage credentials",
    ServerUnavailableError.exit_code: "server unavailable, not ready, or its queue is full",
    ServerError.exit_code: "the server failed while aligning",
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
    result = _client(args).align(args.source, lyrics, language=args.language, format=args.format)
    if args.output:
        try:
            write_atomically(Path(args.output), result.content)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {result.line_count} timed lines ({result.duration_seconds:.1f} s of audio) to {args.output}",
              file=sys.stderr)
    else:
        sys.stdout.write(result.content)
        sys.stdout.flush()
    return EXIT_OK


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

    health = commands.add_parser("health", parents=[common], help="is the server live and the model ready?")
    health.set_defaults(run=cmd_health)
    return parser


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", default="Chinese", help="language of the lyrics: name or code (default Chinese)")
    parser.add_argument("--format", choices=FORMATS, default="lrc", help="output format (default lrc)")


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
