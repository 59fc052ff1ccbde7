"""The ``fastmd`` command's entry: the argument parser and the checks of every option value
(before anything starts: a bad value is an argparse error naming the option, exit 2), the event
loop, and the logging configuration. The CLI is the only place in fastmd that configures logging
or picks the event loop; the commands themselves live in :mod:`fastmd.cli.demo`,
:mod:`fastmd.cli.watch`, :mod:`fastmd.cli.sim` and :mod:`fastmd.cli.monitor`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, get_args

from fastmd.cli.common import EXIT_USAGE
from fastmd.cli.demo import run as run_demo
from fastmd.cli.monitor import run as run_monitor
from fastmd.cli.record import run as run_record
from fastmd.cli.relay import run as run_relay
from fastmd.cli.replay import run as run_replay
from fastmd.cli.sim import run as run_sim
from fastmd.cli.watch import run as run_watch
from fastmd.core.sbe_streams import parse_sbe_stream
from fastmd.core.streams import Venue, validate_stream, validate_symbol
from fastmd.errors import StreamNameError

__all__ = ["main"]

VENUES: Final[tuple[Venue, ...]] = get_args(Venue)
DEFAULT_SYMBOLS: Final = "BTCUSDT,ETHUSDT,BNBUSDT"
GIVE_UP_AFTER: Final = 10.0
"""Seconds ``fastmd demo`` and ``fastmd watch`` wait for the exchange to answer at all."""

# Every option value is checked here, before anything starts: a bad one is an argparse error
# naming the option (exit 2). Checks that need two options at once (symbols or streams, and
# --venue) run in _check_args, right after parsing, and end the same way. The venue's grammar of
# symbols and streams is fastmd.core.streams' (validate_symbol, validate_stream), not restated.


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _int_within(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"within {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    return convert


_count = _int_within(1)
_port = _int_within(0, 65535)
_http_status = _int_within(100, 599)


def _symbol_list(text: str) -> list[str]:
    """``--symbols``: comma-separated symbols, uppercased and deduplicated, at least one. Each
    is checked against the venue's symbol grammar by :func:`_check_symbols`."""
    symbols = list(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        raise argparse.ArgumentTypeError("needs at least one symbol, e.g. BTCUSDT,ETHUSDT")
    return symbols


def _url(*schemes: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in schemes or not rest.strip("/"):
            allowed = " or ".join(f"{s}://HOST[:PORT]" for s in schemes)
            raise argparse.ArgumentTypeError(f"{text!r} is not a URL of the form {allowed}")
        return text

    return convert


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a level: DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return level


def _add_streams(parser: argparse.ArgumentParser) -> None:
    """The STREAM arguments of a command that needs at least one."""
    parser.add_argument("streams", nargs="+", metavar="STREAM", help="e.g. btcusdt@trade")


def _add_exchange(parser: argparse.ArgumentParser, *, url_help: str) -> None:
    """``--venue``, and ``--url``/``--rest-url``: a real exchange instead of the simulator."""
    parser.add_argument("--venue", choices=VENUES, default="binance-spot")
    parser.add_argument("--url", metavar="WS_URL", type=_url("ws", "wss"), help=url_help)
    parser.add_argument(
        "--rest-url", metavar="REST_URL", type=_url("http", "https"),
        help="its REST base URL (default: the venue's)",
    )  # fmt: skip


def _add_until_stopped(parser: argparse.ArgumentParser) -> None:
    """``--duration`` of a command that runs until Ctrl-C unless given one."""
    parser.add_argument(
        "--duration", type=_positive, default=None, metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )  # fmt: skip


def _add_listen(parser: argparse.ArgumentParser) -> None:
    """Where a served simulator listens: ``--host``, ``--port``, ``--rest-port``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=0, help="WebSocket port (0: any free port)")
    parser.add_argument("--rest-port", type=_port, default=0, help="REST port (0: any free port)")


def _add_target(parser: argparse.ArgumentParser, *, rate: float) -> None:
    """Options choosing between the embedded simulator and a real exchange."""
    _add_exchange(parser, url_help="a real exchange's WebSocket base URL (no simulator)")
    parser.add_argument(
        "--symbols", type=_symbol_list, default=DEFAULT_SYMBOLS, metavar="SYMBOLS",
        help=f"comma-separated symbols the simulator lists (default {DEFAULT_SYMBOLS})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="simulator market seed")
    parser.add_argument(
        "--rate", type=_non_negative, default=rate,
        help=f"simulator order-flow events/s ({rate:g})",
    )  # fmt: skip
    parser.add_argument(
        "--give-up-after", type=_positive, default=GIVE_UP_AFTER, metavar="S",
        help="exit when neither the WebSocket nor any event got through within S seconds, or "
        f"when the connection's circuit opens first (default {GIVE_UP_AFTER:g})",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    from fastmd import __version__

    parser = argparse.ArgumentParser(prog="fastmd", description="fastmd: Binance market data.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument(
        "--log-level", type=_log_level, default="WARNING", help="DEBUG, INFO, WARNING..."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="live view of fastmd against the embedded simulator, with a connection drop",
        description="Subscribe to trades, 1m klines, book tickers and depth diffs, show a live "
        "view, drop the connection at half time (simulator only) and print a summary.",
    )
    _add_target(demo, rate=300.0)
    demo.add_argument("--duration", type=_positive, default=20.0, help="seconds (default 20)")
    demo.add_argument("--no-fault", action="store_true", help="do not drop the connection")
    demo.add_argument("--plain", action="store_true", help="line-based progress even on a terminal")

    watch = sub.add_parser(
        "watch",
        help="print events of STREAMs as JSON lines",
        description='Print {"stream": ..., "event": ...} JSON lines, one per event.',
    )
    _add_streams(watch)
    _add_target(watch, rate=50.0)
    watch.add_argument("--count", type=_count, help="stop after N events")
    watch.add_argument(
        "--price-type", choices=("float", "str"), default="float",
        help="prices as JSON numbers, or as Binance's exact decimal strings",
    )  # fmt: skip
    watch.add_argument(
        "--ack-wait", type=_positive, default=10.0, help="seconds before a slow-ack warning"
    )

    monitor = sub.add_parser(
        "monitor",
        help="live view of the client's health: streams, connections, alerts",
        description="Subscribe to STREAMs (default: the demo's streams of --symbols) and show "
        "client.health() live: every stream's status, rate, last event, lag and gaps, every "
        "connection, and alerts as they fire and resolve; a summary at the end.",
    )
    monitor.add_argument(
        "streams", nargs="*", metavar="STREAM",
        help="e.g. btcusdt@trade (default: trades, 1m klines, book tickers, depth of --symbols)",
    )  # fmt: skip
    _add_target(monitor, rate=300.0)
    _add_until_stopped(monitor)
    monitor.add_argument(
        "--plain", action="store_true", help="line-based output even on a terminal"
    )
    monitor.add_argument(
        "--stale-after", type=_positive, default=None, metavar="S",
        help="a stream silent for S seconds is STALE (default: judged by its kind)",
    )  # fmt: skip
    monitor.add_argument(
        "--prometheus-port", type=_port, default=None, metavar="N",
        help="serve Prometheus metrics on --prometheus-host:N (0: any free port; needs "
        "pip install 'fastmd[prometheus]')",
    )  # fmt: skip
    monitor.add_argument(
        "--prometheus-host", default="127.0.0.1", metavar="HOST",
        help="address the metrics endpoint binds (default 127.0.0.1)",
    )  # fmt: skip
    muting = monitor.add_argument_group("fault (simulator only)")
    muting.add_argument(
        "--mute", action="append", metavar="STREAM",
        help="the simulator stops sending STREAM's data (its socket stays up) at --mute-at for "
        "--mute-for seconds: watch it go STALE, the alert fire, recovery, the alert resolve",
    )  # fmt: skip
    muting.add_argument("--mute-at", type=_non_negative, default=2.0, metavar="S")
    muting.add_argument("--mute-for", type=_positive, default=5.0, metavar="S")

    record = sub.add_parser(
        "record",
        help="record STREAMs to a folder: every frame as received, snapshots, gaps",
        description="Record a session (docs/recording.md): every frame of STREAMs exactly as "
        "received with its receive time, the REST depth snapshots of their order books, "
        "exchangeInfo, gaps and a manifest, in compressed chunks. Without --url it records "
        "the embedded simulator.",
    )
    _add_streams(record)
    record.add_argument("--out", required=True, metavar="DIR", help="the recording's folder")
    _add_target(record, rate=300.0)
    _add_until_stopped(record)
    record.add_argument(
        "--compression", choices=("zstd", "gzip"), default="zstd",
        help="chunk compression (default zstd: docs/recording.md has the measurement)",
    )  # fmt: skip
    record.add_argument(
        "--rotate-mb", type=_positive, default=64.0, metavar="MB",
        help="start a new chunk after MB uncompressed (default 64)",
    )  # fmt: skip
    record.add_argument(
        "--rotate-seconds", type=_positive, default=3600.0, metavar="S",
        help="start a new chunk after S seconds (default 3600)",
    )  # fmt: skip
    record.add_argument(
        "--flush-interval", type=_positive, default=1.0, metavar="S",
        help="flush the open chunk every S seconds: what a killed recorder loses at most",
    )  # fmt: skip
    record.add_argument("--plain", action="store_true", help="plain progress lines on a terminal")
    record.set_defaults(command_parser=record)

    replay = sub.add_parser(
        "replay",
        help="serve a recording (fastmd record's folder) with the simulator",
        description="Serve the recorded frames to the clients that subscribe to them, at the "
        "recorded pace (or --speed X, or --fast), and REST depth with the recorded snapshots.",
    )
    replay.add_argument("dir", metavar="DIR", help="the recording's folder")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=_positive, default=1.0, metavar="X",
        help="X times the recorded pace (default 1)",
    )  # fmt: skip
    pace.add_argument("--fast", action="store_true", help="as fast as possible")
    _add_listen(replay)
    replay.add_argument(
        "--linger", type=_non_negative, default=1.0, metavar="S",
        help="keep serving S seconds after the last frame (default 1)",
    )  # fmt: skip
    replay.set_defaults(command_parser=replay, symbols=[], venue="binance-spot")

    sim = sub.add_parser("sim", help="run the exchange simulator until Ctrl-C")
    sim.add_argument("--venue", choices=VENUES, default="binance-spot")
    sim.add_argument("--symbols", type=_symbol_list, default=DEFAULT_SYMBOLS, metavar="SYMBOLS")
    sim.add_argument("--seed", type=int, default=0)
    _add_listen(sim)
    sim.add_argument("--rate", type=_non_negative, default=50.0, help="order-flow events/s")
    sim.add_argument("--replay", metavar="DIR", help="serve a recording instead of the market")
    sim.add_argument(
        "--replay-speed", type=_non_negative, default=1.0, help="1 = recorded pace, 0 = max"
    )
    _add_until_stopped(sim)
    sim.add_argument(
        "--sbe", action="store_true",
        help="serve Binance's SBE binary market data (spot; needs X-MBX-APIKEY, see docs/sbe.md)",
    )  # fmt: skip
    sim.add_argument(
        "--api-key", action="append", metavar="KEY", dest="api_keys",
        help="with --sbe: an API key the simulator accepts (repeatable; default: any)",
    )  # fmt: skip
    limits = sim.add_argument_group("limits (Binance's values by default)")
    limits.add_argument("--ping-interval", type=_positive)
    limits.add_argument("--pong-timeout", type=_positive)
    limits.add_argument("--lifetime", type=_positive, help="connection lifetime in seconds")
    limits.add_argument("--max-incoming", type=_count, help="incoming frames per second")
    limits.add_argument("--max-streams", type=_count, help="streams per connection")
    limits.add_argument("--rest-weight", type=_count, help="REST weight per minute")
    faults = sim.add_argument_group("faults")
    faults.add_argument("--drop-every", type=_positive, metavar="S", help="drop all connections")
    faults.add_argument("--drop-mode", choices=("close", "fin", "rst"), default="close")
    faults.add_argument("--drop-code", type=_int_within(1000, 4999), default=1001)
    faults.add_argument("--shutdown-every", type=_positive, metavar="S", help="serverShutdown")
    faults.add_argument("--skip", action="append", metavar="STREAM", help="skip frames of STREAM")
    faults.add_argument("--skip-every", type=_positive, default=5.0, metavar="S")
    faults.add_argument("--refuse-upgrades", type=_http_status, metavar="STATUS")
    faults.add_argument("--rest-error", type=_http_status, metavar="STATUS")
    faults.add_argument("--rest-delay", type=_positive, metavar="S")
    faults.add_argument("--retry-after", type=_non_negative, metavar="S")
    relay = sub.add_parser(
        "relay",
        help="publish the events, gaps and health of STREAMs to NATS (docs/nats.md)",
        description="Run a client for STREAMs and publish every event (in batches), gap and "
        "health change to NATS subjects fastmd.<venue>.ev|gap|health.... Without --url it "
        "relays the embedded simulator. Needs the nats extra: pip install 'fastmd[nats]'.",
    )
    _add_streams(relay)
    relay.add_argument(
        "--nats", required=True, metavar="URL", type=_url("nats", "tls"),
        help="the NATS server, e.g. nats://127.0.0.1:4222",
    )  # fmt: skip
    _add_exchange(
        relay, url_help="the exchange's WebSocket base URL (default: the embedded simulator)"
    )
    relay.add_argument(
        "--workers", type=_int_within(1, 256), default=1,
        help="processes, each relaying its own shard of the streams (default 1)",
    )  # fmt: skip
    relay.add_argument(
        "--jetstream", action="store_true",
        help="also keep the messages in a JetStream stream (replay for late consumers)",
    )  # fmt: skip
    relay.add_argument(
        "--retention", type=_positive, default=3600.0, metavar="S",
        help="seconds JetStream keeps messages (default 3600)",
    )  # fmt: skip
    relay.add_argument("--relay-id", metavar="ID", help="the relay's name (default: host)")
    relay.add_argument(
        "--batch-size", type=_int_within(1, 100_000), default=100,
        help="events per batch at most (default 100)",
    )  # fmt: skip
    relay.add_argument(
        "--batch-delay", type=_positive, default=1.0, metavar="MS",
        help="ms an event waits for its batch at most (default 1)",
    )  # fmt: skip
    relay.add_argument(
        "--max-buffered", type=_int_within(1), default=100_000, metavar="N",
        help="events held while NATS is away; then dropped, counted, reported (100000)",
    )  # fmt: skip
    relay.add_argument("--prefix", default="fastmd", help="first subject token")
    relay.add_argument(
        "--rate", type=_non_negative, default=50.0,
        help="simulator order-flow events/s, without --url (50)",
    )  # fmt: skip
    relay.set_defaults(symbols=[], command_parser=relay)

    for command in (demo, watch, sim, monitor):
        command.set_defaults(command_parser=command)
    return parser


def _check_symbols(symbols: Sequence[str], venue: Venue) -> str | None:
    """What is wrong with the first symbol that is not one of ``venue`` (letters and digits;
    ``_`` too for USD-M delivery contracts, BTCUSDT_250926), or ``None``."""
    for symbol in symbols:
        try:
            validate_symbol(symbol, venue)
        except StreamNameError as exc:
            reason = str(exc).removeprefix(f"invalid symbol {symbol!r}: ")
            return f"{symbol!r} is not a symbol on {venue}: {reason}"
    return None


def _check_streams(streams: Sequence[str], venue: Venue) -> str | None:
    """The first invalid stream name's error message, or ``None``."""
    for name in streams:
        try:
            validate_stream(name, venue)
        except StreamNameError as exc:
            return str(exc)
    return None


def _check_sbe_streams(streams: Sequence[str]) -> str | None:
    """The first name that is not a stream of Binance's SBE endpoint, as an error, or ``None``."""
    for name in streams:
        try:
            parse_sbe_stream(name)
        except StreamNameError as exc:
            return str(exc)
    return None


def _check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with options that are only wrong together, or ``None``."""
    problem = _check_symbols(args.symbols, args.venue)
    if problem is not None:
        return f"argument --symbols: {problem}"
    if args.command in ("watch", "monitor", "relay", "record"):
        problem = _check_streams(args.streams, args.venue)
        if problem is not None:
            return f"argument STREAM: {problem}"
    if args.command == "monitor" and args.mute:
        problem = _check_streams(args.mute, args.venue)
        if problem is not None:
            return f"argument --mute: {problem}"
        if args.url:
            return "argument --mute: needs the simulator (no --url)"
    if args.command == "relay":
        if args.max_buffered < args.batch_size:
            return "argument --max-buffered: must be >= --batch-size"
        if not args.prefix.replace("-", "").replace("_", "").isalnum():
            return f"argument --prefix: letters, digits, '-' or '_' only, not {args.prefix!r}"
    if args.command == "sim" and (args.sbe or args.api_keys):
        if not args.sbe:
            return "argument --api-key: needs --sbe"
        if args.venue != "binance-spot":
            return "argument --sbe: Binance serves SBE market data on binance-spot only"
    if args.command == "sim" and args.skip:
        problem = _check_sbe_streams(args.skip) if args.sbe else _check_streams(
            args.skip, args.venue
        )  # fmt: skip
        if problem is not None:
            return f"argument --skip: {problem}"
    if args.command in ("demo", "watch", "monitor", "record") and args.rest_url and not args.url:
        return "argument --rest-url: needs --url (the simulator has its own REST URL)"
    return None


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]]] = {
    "demo": run_demo,
    "watch": run_watch,
    "sim": run_sim,
    "record": run_record,
    "replay": run_replay,
    "relay": run_relay,
    "monitor": run_monitor,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastmd`` command."""
    args = _parser().parse_args(argv)
    problem = _check_args(args)
    if problem is not None:
        args.command_parser.error(problem)  # usage and the problem on stderr, exit 2
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    command = _COMMANDS[args.command]
    try:
        return _run(command(args), args.loop or _default_loop())
    except KeyboardInterrupt:  # Ctrl-C before the command installed its own handler
        return 130
    except (OSError, ValueError) as exc:
        print(f"fastmd {args.command}: {exc}", file=sys.stderr)
        return 1


def _run(coro: Coroutine[Any, Any, int], loop_name: str) -> int:
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError:
            coro.close()
            print("uvloop is not installed: pip install 'fastmd[uvloop]'", file=sys.stderr)
            return EXIT_USAGE
        result: int = uvloop.run(coro)
        return result
    return asyncio.run(coro)


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
