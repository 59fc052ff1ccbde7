"""``fastmd record STREAM... --out DIR``: record a session (docs/recording.md) from the embedded
simulator, or from a real exchange with ``--url``, with progress on the terminal while it runs
(a live line on a terminal, a plain line every few seconds otherwise) and a summary at the end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

import fastmd
from fastmd.cli.common import signals_set, start_target
from fastmd.cli.reports import Repeats, fold_key

if TYPE_CHECKING:
    from fastmd import ErrorReport, RecordingStats

__all__ = ["run"]

logger = logging.getLogger(__name__)

PLAIN_EVERY: Final = 5.0
"""Seconds between plain progress lines (pipes, CI)."""


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def progress_line(stats: RecordingStats) -> str:
    """One line of progress: frames, their rate, bytes received and written, chunks, snapshots
    and gaps so far."""
    rate = stats.frames / stats.elapsed if stats.elapsed > 0 else 0.0
    ratio = stats.frame_bytes / stats.written_bytes if stats.written_bytes else 0.0
    return (
        f"{stats.elapsed:6.1f} s  {stats.frames} frames ({rate:.0f}/s)  "
        f"{_size(stats.frame_bytes)} received -> {_size(stats.written_bytes)} on disk"
        + (f" ({ratio:.1f}x)" if ratio else "")
        + f"  {stats.chunks} chunks done  {stats.snapshots} snapshots  {stats.gaps} gaps"
    )


class _Progress:
    """Shows :class:`fastmd.RecordingStats` as they come: a rich live line on a terminal, a plain
    line every :data:`PLAIN_EVERY` seconds otherwise."""

    def __init__(self, out: TextIO, plain: bool) -> None:
        self._out = out
        self._plain = plain
        self._live: Any = None
        self._last_line = 0.0
        if not plain:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._live = Live(
                Text("recording..."), console=Console(file=out), auto_refresh=False, transient=True
            )
            self._live.start()

    def update(self, stats: RecordingStats) -> None:
        line = progress_line(stats)
        if self._live is not None:
            text = self._text(f"recording  {line}", no_wrap=True, overflow="ellipsis")
            self._live.update(text, refresh=True)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY:
            self._last_line = now
            print(line, file=self._out, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class _RecordErrors:
    """The recorder's error reporter: each distinct report once on stderr (and logged)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._repeats = Repeats()

    def __call__(self, report: ErrorReport) -> None:
        logger.info("%s: %s", report.code, report.message)
        text = f"{report.severity.value} {report.code}: {report.message}"
        line = self._repeats.admit(text, fold_key(report))
        if line is not None:
            print(f"fastmd record: {line}", file=self._out, flush=True)


async def run(args: argparse.Namespace) -> int:
    """Record until ``--duration`` or Ctrl-C; print a summary. Exit 0, or 1 when the recording
    cannot be written."""
    streams = list(dict.fromkeys(args.streams))
    plain = args.plain or not sys.stdout.isatty()
    async with contextlib.AsyncExitStack() as stack:
        exchange, ws_url, rest_url = await start_target(stack, args)
        source = ws_url if exchange is None else f"the simulator ({', '.join(args.symbols)})"
        print(f"fastmd record: {len(streams)} streams from {source} to {args.out}", flush=True)
        progress = _Progress(sys.stdout, plain)
        stop = asyncio.Event()
        silent: list[float] = []

        def on_progress(stats: RecordingStats) -> None:
            progress.update(stats)
            if stats.frames == 0 and stats.elapsed >= args.give_up_after and not silent:
                silent.append(stats.elapsed)  # nothing at all came: the exchange is not there
                stop.set()

        try:
            with signals_set(stop):
                stats = await fastmd.record(
                    streams,
                    args.out,
                    duration=args.duration,
                    venue=args.venue,
                    ws_url=ws_url,
                    rest_url=rest_url,
                    compression=args.compression,
                    rotate_bytes=int(args.rotate_mb * (1 << 20)),
                    rotate_seconds=args.rotate_seconds,
                    flush_interval=args.flush_interval,
                    stop=stop,
                    on_progress=on_progress,
                    error_reporter=_RecordErrors(sys.stderr),
                )
        except fastmd.RecordingError as exc:
            progress.close()
            print(f"fastmd record: {exc}", file=sys.stderr, flush=True)
            return 1
        progress.close()
    if silent:
        print(
            f"fastmd record: nothing received from {source} within {args.give_up_after:g} s; "
            f"gave up ({args.out} holds the empty recording)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"fastmd record: done. {progress_line(stats).lstrip()}; {args.out}", flush=True)
    return 0
