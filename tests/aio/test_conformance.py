"""Frame-layer conformance: the Autobahn test cases against ``fastmd.Connection`` as a client.

kosoku (PyPI) runs Autobahn's own case files in a fuzzing server on 127.0.0.1; this module is
the client under test: one ``fastmd.Connection`` per case that echoes every text message back
through ``send()``, as Autobahn expects of a client. The verdicts are recorded in
docs/reliability.md, every case that is not OK with its reason; :data:`ALLOWED` is that record,
and the test fails when a case's verdict leaves it.

Harness choices (docs/reliability.md says why):

- ``max_outgoing_per_second=1000``: the echo cases send up to 1000 messages and 10 pings in a
  row, far past Binance's budget of 5 frames a second that the default pacing (4) respects; the
  pacer has its own tests (``test_connection.py``).
- ``max_frame_size`` 16 MiB: case 9.1.6 sends one 16 MiB text message (the default cap, 4 MiB,
  closes such a message with 1009, which is the point of the cap).
- binary messages are never echoed: fastmd is a JSON client and drops binary frames (reported as
  ``binary_frame``). The harness closes the case's connection at that report, so those cases
  end at once (FAILED, by design) instead of at the fuzzing server's timeout.

The whole suite (517 cases) takes about half a minute. To print the per-section table of
docs/reliability.md, or to drive a fuzzing server started by hand (``kosoku -m fuzzingserver
127.0.0.1:9001 -o reports`` writes Autobahn's HTML and JSON reports)::

    python tests/aio/test_conformance.py                       # every case, summary on stdout
    python tests/aio/test_conformance.py 5.* 6.4.*              # some cases
    python tests/aio/test_conformance.py --url ws://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import kosoku
import pytest

import fastmd
from fastmd import ErrorReport

AGENT = "fastmd"
CASE_TIMEOUT = 60.0  # the fuzzing server ends each case itself well before this
HARNESS_OPTIONS: dict[str, Any] = {
    "auto_reconnect": False,
    "max_outgoing_per_second": 1000,
    "max_frame_size": 16 * 1024 * 1024,
    "open_timeout": 5.0,
}

OK = ("OK", "OK")
# Every verdict other than OK that a case may get, by case id pattern (docs/reliability.md has
# the reasons). A case matching no pattern must be OK.
ALLOWED: dict[str, set[tuple[str, str]]] = {
    # binary messages are dropped, not echoed (a JSON client); the harness closes the case
    "1.2.*": {("FAILED", "FAILED")},
    "9.2.*": {("FAILED", "FAILED")},
    "9.4.*": {("FAILED", "FAILED")},
    "9.6.*": {("FAILED", "FAILED")},
    "9.8.*": {("FAILED", "FAILED")},
    # 10 pings in a row: the pong answers the latest ping only (RFC 6455 5.5.3 allows it; the
    # pongs count toward Binance's budget)
    "2.10": {("FAILED", "OK"), OK},
    "2.11": {("FAILED", "OK"), OK},
    # picows parses the frame after a message before it delivers the message: the reserved
    # opcode fails the connection before the echo (NON-STRICT is a pass)
    "4.1.3": {("NON-STRICT", "OK"), OK},
    "4.1.4": {("NON-STRICT", "OK"), OK},
    "4.1.5": {("NON-STRICT", "OK"), OK},
    "4.2.3": {("NON-STRICT", "OK"), OK},
    "4.2.4": {("NON-STRICT", "OK"), OK},
    "4.2.5": {("NON-STRICT", "OK"), OK},
    # invalid UTF-8 inside one frame that arrives in pieces: picows hands over whole frames, so
    # it fails at the end of the frame rather than at the byte (NON-STRICT is a pass)
    "6.4.3": {("NON-STRICT", "OK"), OK},
    "6.4.4": {("NON-STRICT", "OK"), OK},
    # a second close frame in the same read: picows' parser answers it with 1002 before fastmd
    # sees the first one (OK when the two arrive apart)
    "7.1.2": {("FAILED", "WRONG CODE"), OK},
    # informational cases: the spec leaves the behaviour open
    "7.1.6": {("INFORMATIONAL", "INFORMATIONAL"), OK},
    "7.13.*": {("INFORMATIONAL", "INFORMATIONAL"), OK},
    # permessage-deflate: picows does not offer it (Binance does not use it)
    "12.*": {("UNIMPLEMENTED", "OK")},
    "13.*": {("UNIMPLEMENTED", "OK")},
}


def allowed(case_id: str) -> set[tuple[str, str]]:
    for pattern, verdicts in ALLOWED.items():
        if fnmatch.fnmatchcase(case_id, pattern):
            return verdicts
    return {OK}


async def _run_connection(url: str, *, echo: bool, received: list[bytes] | None = None) -> None:
    """One connection of the run: open it, echo (or keep) its messages until the fuzzing server
    closes it (or it gets a binary message, which fastmd does not echo)."""
    conn = fastmd.Connection(url, error_reporter=lambda report: None, **HARNESS_OPTIONS)

    def on_error(report: ErrorReport) -> None:
        if report.code == "binary_frame":  # dropped by design: nothing to wait for
            asyncio.get_running_loop().create_task(conn.close())

    closed = asyncio.Event()
    conn.on("error", on_error)
    conn.on("disconnect", lambda code, reason: closed.set())
    if echo:
        conn.on("message", conn.send)
    elif received is not None:
        conn.on("message", received.append)
    try:
        if await conn.connect(timeout=HARNESS_OPTIONS["open_timeout"]):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), CASE_TIMEOUT)
    finally:
        await conn.close()


async def drive(base_url: str) -> None:
    """Drive every case a fuzzing server at ``base_url`` serves, as Autobahn clients do."""
    count: list[bytes] = []
    await _run_connection(f"{base_url}/getCaseCount", echo=False, received=count)
    for case in range(1, int(count[0]) + 1):
        await _run_connection(f"{base_url}/runCase?case={case}&agent={AGENT}", echo=True)
    await _run_connection(f"{base_url}/updateReports?agent={AGENT}", echo=False)


async def run_cases(
    cases: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> list[Any]:
    """Serve ``cases`` (all by default) on 127.0.0.1 and drive them; the per-case results."""
    async with kosoku.run_fuzzingserver(cases, exclude, host="127.0.0.1", port=0) as server:
        await drive(f"ws://{server.address}:{server.port}")
        try:
            results: list[Any] = await asyncio.wait_for(server.get_result(), 60)
        except kosoku.FailureError as failure:  # some case did not pass: ALLOWED judges
            results = failure.results
    return results


def verdict(result: Any) -> tuple[str, str]:
    return (result.behavior.value, result.behavior_close.value)


def summary(results: Sequence[Any]) -> str:
    """The per-section table and the non-OK cases, as docs/reliability.md shows them."""
    sections: dict[int, Counter[str]] = {}
    for result in results:
        section = int(result.case_id.split(".")[0])
        worst = next((v for v in verdict(result) if v != "OK"), "OK")
        sections.setdefault(section, Counter())[worst] += 1
    kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    lines = ["| section | cases | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 2) + "|"]
    for section in sorted(sections):
        counts = sections[section]
        extra = sorted(set(counts) - set(kinds))  # WRONG CODE, UNCLEAN, ERROR...
        cells = [str(counts[kind]) for kind in kinds]
        if extra:
            cells[-1] += " (" + ", ".join(f"{counts[k]} {k}" for k in extra) + ")"
        lines.append(f"| {section} | {sum(counts.values())} | " + " | ".join(cells) + " |")
    lines.append("")
    for result in results:  # UNIMPLEMENTED (compression) only counted, in the table
        behavior, close = verdict(result)
        if (behavior, close) != OK and behavior != "UNIMPLEMENTED":
            lines.append(f"{result.case_id}: {behavior} / {close}: {result.result}")
    return "\n".join(lines)


@pytest.mark.slow
# Autobahn's compression cases (12.*, 13.*) open their data files without closing them
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <_io.FileIO name='[^']*kosoku"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_autobahn_cases_against_the_connection() -> None:
    results = await run_cases()
    assert len(results) == 517  # 1.* to 13.*: every case kosoku ships
    unexpected = [
        f"{r.case_id}: {verdict(r)} ({r.result} / {r.result_close})"
        for r in results
        if verdict(r) not in allowed(r.case_id)
    ]
    assert unexpected == [], "\n" + "\n".join(unexpected) + "\n\n" + summary(results)
    # ALLOWED is the record of docs/reliability.md: no stale entry may hide in it
    stale = [p for p in ALLOWED if not any(fnmatch.fnmatchcase(r.case_id, p) for r in results)]
    assert stale == []


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case ids or globs (default: all)")
    parser.add_argument("--exclude", action="append", help="case ids or globs to leave out")
    parser.add_argument("--url", help="drive a fuzzing server started by hand instead")
    args = parser.parse_args(argv)
    if args.url:
        asyncio.run(drive(args.url.rstrip("/")))
        return
    started = time.monotonic()
    results = asyncio.run(run_cases(args.cases or None, args.exclude))
    print(summary(results))
    print(f"\n{len(results)} cases in {time.monotonic() - started:.1f} s")
    bad = [r.case_id for r in results if verdict(r) not in allowed(r.case_id)]
    if bad:
        raise SystemExit(f"verdicts outside ALLOWED: {', '.join(bad)}")


if __name__ == "__main__":
    main()
