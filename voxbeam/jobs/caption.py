"""``voxbeam caption FILE``: play audio to a VoxNexus-compatible service at real time, as the spec's captioning
pattern does (100 ms chunks), and print its partials and finals as they come: a server tried in ten seconds.

FILE is anything PyAV decodes, or ``-`` for raw PCM s16le mono on stdin at --sample_rate. Without --endpoint
an embedded ``voxbeam serve`` is started, as the jobs do. The service flags are the jobs' own
(``voxbeam.flags``); so are the checks before any audio is sent (``jobs.preflight``): a wrong URL, key,
certificate, language or model is one line naming the flag, and exit 2. Ctrl-C stops the audio and flushes:
the finals for what was sent are printed, and the exit status is 130; a second Ctrl-C quits at once.
No Beam import here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, TextIO

from voxbeam import audio, protocol
from voxbeam.client.config import ClientConfig
from voxbeam.client.live import LiveEvent, LiveFeed, advertises_live, recognize_live
from voxbeam.errors import AudioError, ServerBusyError, UsageError, VoxBeamError, describe_os_error
from voxbeam.flag_values import number, sample_rate
from voxbeam.flags import BOOLEAN, SERVICE_FLAGS, TRANSCRIBE_FLAGS, Flag
from voxbeam.jobs.caption_view import FORMATS, EventLines, LiveLine
from voxbeam.jobs.embedded import embedded_server
from voxbeam.jobs.preflight import checked_endpoints, preflight
from voxbeam.jobs.summary import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE
from voxbeam.protocol import API_KEY_ENV, AUTO_LANGUAGE
from voxbeam.protocol_controls import SttControls

PROG = "voxbeam caption"
STDIN = "-"
CHUNK_MS = 100  # the spec's captioning pattern: 100 ms chunks
REALTIME = ("auto", *BOOLEAN)


def speed(text: str) -> float:
    """--speed: a multiple of real time, 0 or ``max`` for as fast as the service takes the audio."""
    return 0.0 if text.strip().lower() == "max" else number(minimum=0.0)(text)


def _shared(table: Sequence[Flag], name: str, **changes: Any) -> Flag:
    """A job's flag (``voxbeam.flags``), with its help said for this command where it differs."""
    flag = next(f for f in table if f.name == name)
    return dataclasses.replace(flag, **changes)


FLAGS = (
    _shared(
        TRANSCRIBE_FLAGS,
        "language",
        help=f"language of the speech (en-US, de, ...), or {AUTO_LANGUAGE}: the service detects it",
    ),
    Flag(
        "sample_rate",
        "with FILE -: the rate of the raw PCM (s16le mono) on stdin; with a file: the rate it is decoded to and "
        "sent at",
        16000,
        sample_rate,
        metavar="HZ",
    ),
    Flag(
        "speed",
        "how fast to play the audio: 1 is real time (the spec's captioning pattern; voxbeam serve sends partials "
        "only to audio paced near it), 2 twice as fast, 0 or max as fast as the service takes it",
        1.0,
        speed,
        metavar="X",
    ),
    Flag(
        "format",
        "text (on a terminal, the partial rewritten in place and each final on its own line; elsewhere one "
        "line per event) or jsonl (one JSON object per partial and final: type, text, start_ms, end_ms, "
        "latency_ms)",
        "text",
        choices=FORMATS,
    ),
    Flag(
        "realtime",
        "the init extension realtime (a live stream, which voxbeam serve admits only while it can keep it in "
        "real time): auto sends true at --speed 1 or less and false faster, to a service whose /healthz "
        "advertises live_capacity, and nothing to others; true or false send it whatever the service says",
        "auto",
        choices=REALTIME,
    ),
    _shared(TRANSCRIBE_FLAGS, "stt_model"),
    _shared(
        SERVICE_FLAGS,
        "endpoint",
        help="VoxNexus-compatible service base URL (e.g. wss://api.voxnexus.ai)",
        default_help="an embedded `voxbeam serve`, started for the run",
    ),
    _shared(SERVICE_FLAGS, "api_key", help="API key for the service"),
    _shared(SERVICE_FLAGS, "auth"),
    _shared(SERVICE_FLAGS, "ca_bundle"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line naming the problem instead of the usage block
        raise UsageError("", message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} FILE [options]",
        description="Play audio to a VoxNexus-compatible speech service at real time in 100 ms chunks and print "
        "the live partials and finals.",
        epilog="Ctrl-C stops the audio: the finals for what was sent are printed, then the exit status is 130 "
        "(a second Ctrl-C quits at once). Exit status: 0 done, 2 a usage error (the line names the flag), "
        "1 the stream failed (the service refused or lost it).",
        allow_abbrev=False,
        exit_on_error=False,
    )
    parser.add_argument(
        "file",
        metavar="FILE",
        help="audio in any container PyAV decodes (wav, flac, mp3, ogg/opus, m4a, ...), or - for raw PCM "
        "s16le mono on stdin at --sample_rate",
    )
    for flag in FLAGS:
        flag.add_to(parser)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (``--help`` prints and raises SystemExit); UsageError names what is wrong."""
    try:
        return build_parser().parse_args(list(argv))
    except argparse.ArgumentError as exc:
        raise UsageError(exc.argument_name or "", exc.message) from None


def open_audio(path: str, rate: int, stdin: IO[bytes] | None = None) -> Iterable[bytes]:
    """FILE's PCM at ``rate`` (its first chunk decoded here, so a missing or undecodable file is a
    UsageError before anything connects), or stdin's bytes as they come."""
    if path == STDIN:
        if stdin is None and sys.stdin.isatty():
            raise UsageError("FILE", "- reads raw PCM from stdin, which is a terminal here: pipe the audio in")
        return _read(stdin if stdin is not None else sys.stdin.buffer, rate * audio.BYTES_PER_SAMPLE * CHUNK_MS // 1000)
    if os.path.isdir(path):
        raise UsageError("FILE", f"{path} is a folder; give an audio file")
    pcm = audio.decode_to_pcm(path, rate, chunk_ms=CHUNK_MS)
    try:
        first = next(pcm)
    except StopIteration:
        raise UsageError("FILE", f"{path} holds no audio") from None
    except AudioError as exc:
        raise UsageError("FILE", f"{path}: {exc.message}") from None
    except OSError as exc:
        raise UsageError("FILE", describe_os_error(exc, path)) from None
    return itertools.chain((first,), pcm)


def _read(stream: IO[bytes], size: int) -> Iterator[bytes]:
    read = getattr(stream, "read1", stream.read)  # what a pipe has now, not a wait for a full buffer
    while data := read(size):
        yield data


def caption_main(argv: Sequence[str], *, stdin: IO[bytes] | None = None, stdout: TextIO | None = None) -> int:
    """``voxbeam caption``: prints the events on stdout and what happened on stderr; returns the exit status."""
    out = stdout or sys.stdout
    try:
        args = parse(argv)
        return _caption(args, stdin, out)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _caption(args: argparse.Namespace, stdin: IO[bytes] | None, out: TextIO) -> int:
    pcm = open_audio(args.file, args.sample_rate, stdin)
    if not args.endpoint:
        print("no --endpoint: starting an embedded voxbeam server ...", file=sys.stderr, flush=True)
        with embedded_server(args.stt_model) as server:
            return _stream(args, ClientConfig(endpoints=(server.url,), api_key=server.api_key), pcm, out)
    endpoints = checked_endpoints(args.endpoint)
    if len(endpoints) > 1:
        raise UsageError("--endpoint", "captions stream to one service: give one URL")
    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        client = ClientConfig(endpoints=endpoints, api_key=key, auth=args.auth, ca_bundle=args.ca_bundle)
    except ValueError as exc:
        raise UsageError("--endpoint", str(exc)) from None
    return _stream(args, client, pcm, out)


def _realtime(args: argparse.Namespace, client: ClientConfig) -> bool | None:
    if args.realtime != "auto":
        return args.realtime == "true"
    if not asyncio.run(advertises_live(client)):
        return None  # a spec-only service: it is sent nothing it does not know
    return 0 < args.speed <= 1


def _stream(args: argparse.Namespace, client: ClientConfig, pcm: Iterable[bytes], out: TextIO) -> int:
    init = protocol.SttInit.asking(
        args.language,
        args.sample_rate,
        timestamps=False,
        realtime=_realtime(args, client),
        controls=SttControls(model=args.stt_model),
    )
    # A wrong URL, key, CA, language or model: exit 2 naming the flag. Checked without "realtime", so that the
    # check takes no live slot of a service that holds few (the stream's own session may then be SERVER_BUSY).
    preflight(client, ("stt", dataclasses.replace(init, realtime=None)), secret=False)
    view = LiveLine(out) if args.format == "text" and out.isatty() else EventLines(out, args.format)
    feed = LiveFeed(pcm, sample_rate=args.sample_rate, chunk_ms=CHUNK_MS, speed=args.speed)
    pace = "as fast as it goes" if args.speed == 0 else f"{args.speed:g}x real time"
    where = protocol.redact(client.endpoints[0])
    print(f"captioning {args.file} on {where} at {pace}; Ctrl-C stops", file=sys.stderr, flush=True)
    counts = {"partial": 0, "final": 0}

    def show(event: LiveEvent) -> None:
        counts["final" if event.final else "partial"] += 1
        view(event)

    try:
        asyncio.run(_live(client, init, feed, show))
    except AudioError as exc:
        view.close()
        print(f"error: FILE: {args.file}: {exc.message}", file=sys.stderr)
        return EXIT_JOB_FAILED
    except ServerBusyError as exc:
        view.close()
        print(f"error: {exc} (it holds no more streams now: try again later)", file=sys.stderr)
        return EXIT_JOB_FAILED
    except VoxBeamError as exc:
        view.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    view.close()
    if feed.sent_bytes == 0 and not feed.stopped:
        raise UsageError("FILE", "no audio came on stdin" if args.file == STDIN else f"{args.file} holds no audio")
    done = time.monotonic()
    flush_ms = round((done - (feed.finished or done)) * 1000)
    print(
        f"{counts['final']} finals, {counts['partial']} partials for {feed.sent_ms / 1000:.1f} s of audio; "
        f"flush_done {flush_ms} ms after the audio ended",
        file=sys.stderr,
    )
    if feed.stopped:
        print("interrupted: the audio stopped there", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


async def _live(
    client: ClientConfig, init: protocol.SttInit, feed: LiveFeed, show: Callable[[LiveEvent], None]
) -> None:
    """The stream, with Ctrl-C asking ``feed`` to stop (the session flushes) and a second one cancelling it."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def interrupt() -> None:
        if feed.stopped:
            task.cancel()
            return
        feed.stop()
        print("\nstopping: the finals for the audio sent come next (Ctrl-C again quits)", file=sys.stderr, flush=True)

    handled = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread: plain Ctrl-C
        loop.add_signal_handler(signal.SIGINT, interrupt)
        handled = True
    try:
        await recognize_live(client, init, feed, show)
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
