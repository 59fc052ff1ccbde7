"""``fastmd watch STREAM...``: events as JSON lines on stdout, everything else on stderr (each
distinct error report once). Stops every stream when one is refused, and gives up, with the cause
in one line, on an exchange that never answers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import fastmd
from fastmd.cli.common import (
    EXIT_USAGE,
    cancel_all,
    signals_set,
    start_target,
    wait_until_set,
)
from fastmd.cli.reports import (
    CONNECT_CODES,
    UNREACHABLE_CODES,
    Reachability,
    Repeats,
    fold_key,
    until_unreachable,
)

if TYPE_CHECKING:
    from fastmd import ErrorReport

__all__ = ["run"]

logger = logging.getLogger(__name__)


class _WatchErrors:
    """The error reporter of ``fastmd watch``: reports become lines on stderr, each distinct one
    once (see :class:`Repeats`); every report is also logged at INFO (``--log-level INFO``).

    Until the exchange has answered, reports are held back: if it never does, the one give-up
    line says it all; once it does, held reports that still matter (a failed symbol check) are
    printed and failed connection attempts are forgotten.
    """

    def __init__(self, reach: Reachability, out: TextIO) -> None:
        self._reach = reach
        self._out = out
        self._repeats = Repeats()
        self._held: list[ErrorReport] = []

    def __call__(self, report: ErrorReport) -> None:
        logger.info("%s: %s", report.code, report.message)
        if report.code == "subscription_failed":
            return  # said by the subscription's own waiter, with what happens next
        if not self._reach.reached and report.code in UNREACHABLE_CODES:
            self._held.append(report)
            return
        self._print(report)

    def release(self) -> None:
        """The exchange answered: print what was held back, except failed connections."""
        held, self._held = self._held, []
        for report in held:
            if report.code not in CONNECT_CODES and report.code != "circuit_open":
                self._print(report)

    def say(self, text: str) -> None:
        print(f"fastmd watch: {text}", file=self._out, flush=True)

    def _print(self, report: ErrorReport) -> None:
        text = f"{report.severity.value} {report.code}: {report.message}"
        line = self._repeats.admit(text, fold_key(report))
        if line is not None:
            self.say(line)


async def run(args: argparse.Namespace) -> int:
    """Print events until ``--count``, Ctrl-C, a refused stream or an exchange that never
    answers; exit 0, 2 (a symbol the exchange does not list) or 1."""
    import msgspec

    streams: list[str] = list(dict.fromkeys(args.streams))
    price_type = {"float": float, "str": str}[args.price_type]
    reach = Reachability(args.give_up_after)
    errors = _WatchErrors(reach, sys.stderr)
    async with contextlib.AsyncExitStack() as stack:
        # The simulator lists --symbols and nothing else, as an exchange lists its markets:
        # a stream of any other symbol is refused by the client's symbol check below.
        exchange, ws_url, rest_url = await start_target(stack, args)
        listed = ""
        if exchange is not None:
            listed = f" (the simulator lists {', '.join(args.symbols)}; see --symbols)"
        client = fastmd.Client(
            args.venue,
            ws_url=ws_url,
            rest_url=rest_url,
            price_type=price_type,
            error_reporter=errors,
        )
        reach.watch(client)
        await stack.enter_async_context(client)

        stop = asyncio.Event()
        out = sys.stdout.buffer
        encode = msgspec.json.Encoder().encode
        state = {"written": 0, "exit": 0}
        limit: int | None = args.count

        def printer(name: str) -> Callable[[Any], None]:
            prefix = b'{"stream":' + encode(name) + b',"event":'

            def write(event: Any) -> None:
                if stop.is_set():
                    return
                try:
                    out.write(prefix + encode(event) + b"}\n")
                except BrokenPipeError:  # the reader went away (| head): stop quietly
                    _silence_stdout()
                    stop.set()
                    return
                state["written"] += 1
                if limit is not None and state["written"] >= limit:
                    stop.set()

            return write

        async def settle(sub: fastmd.Subscription) -> None:
            try:
                await sub.wait_active(args.ack_wait)
            except fastmd.FastmdTimeoutError:
                if reach.reached:  # otherwise the give-up line will say why
                    errors.say(
                        f"{', '.join(sub.streams)} not acknowledged within {args.ack_wait:g} s; "
                        "still trying (Ctrl-C to stop)"
                    )
            except fastmd.FastmdError as exc:
                # A refused stream stops them all: a typo must not go unnoticed in a pipe.
                unknown = isinstance(exc, fastmd.UnknownSymbolError)
                errors.say(f"{exc}{listed if unknown else ''}")
                if state["exit"] == 0 and len(streams) > 1:
                    errors.say("stopping every stream: fix or drop the refused one")
                state["exit"] = max(state["exit"], EXIT_USAGE if unknown else 1)
                stop.set()

        async def give_up() -> None:
            verdict = await until_unreachable(reach, lambda: state["written"] > 0, stop)
            if verdict is None:
                errors.release()
                return
            errors.say(verdict)
            state["exit"] = 1
            stop.set()

        subs = [client.subscribe(name, printer(name)) for name in streams]
        tasks = [asyncio.create_task(settle(sub)) for sub in subs]
        tasks.append(asyncio.create_task(give_up()))
        try:
            with signals_set(stop):
                while not stop.is_set():
                    await wait_until_set(stop, 0.1)
                    # Flushing on a timer rather than per event keeps a write syscall off the
                    # hot path; a reader still sees lines within 0.1 s.
                    _flush(out, stop)
        finally:
            # Also when the run is cancelled (Ctrl-C before the handler above was installed):
            # a waiter left running would take the client's closing for a removed subscription.
            await cancel_all(tasks)
        _flush(out, stop)
    return state["exit"]


def _flush(out: Any, stop: asyncio.Event) -> None:
    try:
        out.flush()
    except BrokenPipeError:
        _silence_stdout()
        stop.set()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on a closed
    pipe (the usual recipe of the Python documentation, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
