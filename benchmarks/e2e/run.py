"""Run the end-to-end loopback benchmark and print Markdown tables.

``python -m benchmarks.e2e.run --messages 200000 --repeat 3``

One flood-server process (``benchmarks.e2e.server``, pinned with ``taskset -c 0``) per client
run; the client process (``benchmarks.e2e.clients``) is pinned with ``taskset -c 1``. Stages:

1. throughput: every client in turn, ``--repeat`` interleaved repetitions (the order rotates),
   ``--warmup`` frames then ``--messages`` measured frames; the server's own rate, CPU and a
   bare-socket ``drain`` client show whether the server could be the bottleneck;
2. latency at fixed rates (``--latency-rates``) for bare picows + msgspec and fastmd;
3. malloc events per message (``PYTHONMALLOC=malloc`` and the LD_PRELOAD counter of
   benchmarks/e2e/malloc_counter.c, compiled into a temporary directory);
4. fastmd's RSS before and after ``--rss-messages`` frames.

Ratios are computed within each repetition (the runs of one repetition follow each other within
seconds), then the median is reported with the per-repetition values.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.e2e.common import (
    MALLOC_COUNTER_C,
    ROOT,
    build_malloc_counter,
    pinned,
    run_processes,
)

MAIN = ("picows", "picows_msgspec", "fastmd", "websockets_json", "aiohttp_orjson")
LADDER = ("ladder_connection", "ladder_decoder", "ladder_client_handler")
LABELS = {
    "drain": "(0) bare socket, counts bytes (server + loopback capacity)",
    "picows": "(a) bare picows, no decode",
    "picows_msgspec": "(b) bare picows + msgspec typed envelope + callback",
    "fastmd": "(c) fastmd.Client, gap detection + metrics",
    "fastmd_baseline": "(c0) fastmd.Client at the --baseline commit",
    "websockets_json": "(d) websockets + json",
    "aiohttp_orjson": "(e) aiohttp + orjson",
    "ladder_connection": "(b) decode inside fastmd.Connection",
    "ladder_decoder": "(b) listener + fastmd Decoder.fast_decode",
    "ladder_client_handler": "(b) listener + fastmd's frame router",
}
SHORT = {
    "drain": "(0)",
    "picows": "(a)",
    "picows_msgspec": "(b)",
    "fastmd": "(c)",
    "fastmd_baseline": "(c0)",
    "websockets_json": "(d)",
    "aiohttp_orjson": "(e)",
}


def run_pair(
    kind: str,
    *,
    count: int,
    warmup: int,
    mode: str = "chunks",
    rate: float | None = None,
    latency: bool = False,
    env: dict[str, str] | None = None,
    loop: str = "uvloop",
    timeout: float = 180.0,
    realtime: bool = False,
) -> dict[str, Any]:
    """One server process and one client process; the client's result with the server's
    statistics under ``"server"``. ``realtime`` runs the client under ``chrt -f 10``
    (SCHED_FIFO), so that other tenants' processes cannot delay its wake-ups."""
    server_cmd = [
        *pinned(0), sys.executable, "-m", "benchmarks.e2e.server", "--count", str(count),
        "--mode", mode, "--loop", loop, "--timeout", str(timeout),
    ]  # fmt: skip
    if rate is not None:
        server_cmd += ["--rate", str(rate)]
    priority = ["chrt", "-f", "10"] if realtime and shutil.which("chrt") else []

    def client_cmd(urls: dict[str, Any]) -> list[str]:
        cmd = [
            *priority, *pinned(1), sys.executable, "-m", "benchmarks.e2e.clients", "--kind", kind,
            "--ws-url", urls["ws_url"], "--rest-url", urls["rest_url"],
            "--warmup", str(warmup), "--messages", str(count - warmup), "--loop", loop,
            "--timeout", str(timeout),
        ]  # fmt: skip
        return [*cmd, "--latency"] if latency else cmd

    return run_processes(server_cmd, client_cmd, timeout=timeout, what=f"client {kind}", env=env)


# -- formatting ------------------------------------------------------------------------------------


def _k(value: float) -> str:
    return f"{value / 1000:,.0f}k"


def _num(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _spread(values: Sequence[float], fmt: Callable[[float], str] = _num) -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def _ratio_cell(values: Sequence[float]) -> str:
    per_rep = ", ".join(f"{v:.2f}" for v in values)
    return f"{statistics.median(values):.2f}x [{per_rep}]"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("picows", "msgspec", "orjson", "websockets", "aiohttp", "uvloop"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    pinned_to = "taskset -c 0 / -c 1" if pinned(0) else "not pinned"
    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python "
        f"{platform.python_version()}, {', '.join(versions)}; commit {commit or '?'}; {pinned_to}"
    )


# -- stages ----------------------------------------------------------------------------------------


def stage_throughput(args: argparse.Namespace, kinds: Sequence[str]) -> list[dict[str, Any]]:
    results = []
    for rep in range(args.repeat):
        order = list(kinds[rep % len(kinds) :]) + list(kinds[: rep % len(kinds)])
        for kind in order:
            result = run_pair(
                kind, count=args.warmup + args.messages, warmup=args.warmup, loop=args.loop
            )
            result["rep"] = rep
            results.append(result)
            _progress(f"rep {rep} {kind}: {result.get('msgs_per_s', 0):,.0f} msgs/s")
    return results


def report_throughput(results: list[dict[str, Any]], kinds: Sequence[str]) -> str:
    reps = sorted({r["rep"] for r in results})
    by: dict[tuple[str, int], dict[str, Any]] = {(r["kind"], r["rep"]): r for r in results}

    def rates(kind: str) -> list[float]:
        return [by[kind, rep]["msgs_per_s"] for rep in reps if (kind, rep) in by]

    def ratios(kind: str, ref: str) -> list[float]:
        return [
            by[kind, rep]["msgs_per_s"] / by[ref, rep]["msgs_per_s"]
            for rep in reps
            if (kind, rep) in by and (ref, rep) in by
        ]

    def cpu_ratios(kind: str, ref: str) -> list[float]:
        """Throughput ratio implied by client CPU per message (ref CPU / kind CPU): steadier
        than msgs/s when other processes take turns on the client's core."""
        return [
            by[ref, rep]["cpu_us_per_msg"] / by[kind, rep]["cpu_us_per_msg"]
            for rep in reps
            if (kind, rep) in by and (ref, rep) in by
        ]

    rows = []
    for kind in kinds:
        runs = [by[kind, rep] for rep in reps if (kind, rep) in by]
        if not runs:
            continue
        cpu = [r["cpu_us_per_msg"] for r in runs]
        gcs = [r["gc_collections"] for r in runs]
        per_100k = [
            "/".join(f"{g * 100_000 / r['messages']:.0f}" for g in gc)
            for gc, r in zip(gcs, runs, strict=True)
        ]
        cells = [LABELS.get(kind, kind), _spread(rates(kind), _k), _spread(cpu)]
        for ref in ("picows_msgspec", "websockets_json", "aiohttp_orjson"):
            values = ratios(kind, ref)
            cells.append(f"{statistics.median(values):.2f}x" if values else "")
        cells.append(per_100k[len(per_100k) // 2])
        rows.append(cells)
    header = [
        "client", "msgs/s median (min-max)", "client CPU µs/msg", "x (b)", "x (d)", "x (e)",
        "gc gen0/1/2 per 100k",
    ]  # fmt: skip
    out = [_table(header, rows)]
    if "fastmd" in kinds and "fastmd_baseline" in kinds:
        by_rate = ratios("fastmd", "fastmd_baseline")
        by_cpu = cpu_ratios("fastmd", "fastmd_baseline")
        out.append(
            _table(
                ["before/after", "median [per repetition]"],
                [
                    ["(c) / (c0) msgs/s", _ratio_cell(by_rate)],
                    ["(c) / (c0) by client CPU per message", _ratio_cell(by_cpu)],
                ],
                "lr",
            )
        )
    if all(k in kinds for k in ("fastmd", "picows_msgspec", "websockets_json", "aiohttp_orjson")):
        goals = [
            ("(c) >= 0.8x (b)", "picows_msgspec", 0.8),
            ("(c) >= 5x (d)", "websockets_json", 5.0),
            ("(c) >= 2x (e)", "aiohttp_orjson", 2.0),
        ]
        goal_rows = []
        for name, ref, target in goals:
            values = ratios("fastmd", ref)
            if not values:
                continue
            by_cpu = cpu_ratios("fastmd", ref)
            met = statistics.median(values) >= target
            cpu_met = statistics.median(by_cpu) >= target
            verdict = "met" if met else "**not met**"
            if met != cpu_met:
                verdict += " (CPU: " + ("met" if cpu_met else "not met") + ")"
            goal_rows.append([name, _ratio_cell(values), _ratio_cell(by_cpu), verdict])
        header = ["goal", "msgs/s ratio, median [per repetition]", "by client CPU µs/msg", ""]
        out.append(_table(header, goal_rows, "lrrl"))
    server_rows = []
    for kind in kinds:
        runs = [by[kind, rep] for rep in reps if (kind, rep) in by]
        if not runs:
            continue
        server = [r["server"] for r in runs if r.get("server")]
        server_rows.append([
            SHORT.get(kind, kind),
            _spread([s["msgs_per_s"] for s in server], _k),
            _spread([s["cpu_us_per_msg"] for s in server], lambda v: f"{v:.3f}"),
            _spread([100 * s["cpu_utilisation"] for s in server], lambda v: f"{v:.0f}%"),
        ])  # fmt: skip
    server_header = [
        "client",
        "server msgs/s (flood start to drained)",
        "server CPU µs/msg",
        "server CPU busy",
    ]
    out.append(_table(server_header, server_rows))
    return "\n\n".join(out)


def stage_latency(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for rate in args.latency_rates:
        warmup = int(rate * args.latency_warmup)
        count = warmup + int(rate * args.latency_seconds)
        for rep in range(args.latency_repeat):
            order = ("picows_msgspec", "fastmd") if rep % 2 == 0 else ("fastmd", "picows_msgspec")
            for kind in order:
                result = run_pair(
                    kind, count=count, warmup=warmup, mode="paced", rate=rate, latency=True,
                    loop=args.loop, realtime=args.latency_rt,
                )  # fmt: skip
                result.update(rep=rep, rate=rate)
                results.append(result)
                lat = result.get("latency_us", {})
                _progress(f"latency {rate:g}/s rep {rep} {kind}: p99 {lat.get('p99', 0):.0f} µs")
    return results


def report_latency(results: list[dict[str, Any]]) -> str:
    rows = []
    goal_rows = []
    for rate in sorted({r["rate"] for r in results}):
        at_rate = [r for r in results if r["rate"] == rate]
        for kind in ("picows_msgspec", "fastmd"):
            runs = [r for r in at_rate if r["kind"] == kind and "latency_us" in r]
            if not runs:
                continue
            cells = [f"{rate:,.0f}/s", SHORT[kind]]
            for q in ("p50", "p90", "p99", "p99.9", "max"):
                cells.append(_spread([r["latency_us"][q] for r in runs], lambda v: f"{v:,.0f}"))
            cells.append(f"{runs[0]['latency_samples']:,}")
            cells.append(_spread([r["server"].get("msgs_per_s", 0) for r in runs], _k))
            rows.append(cells)
        reps = sorted({r["rep"] for r in at_rate})
        ratio = []
        for rep in reps:
            pair = {r["kind"]: r for r in at_rate if r["rep"] == rep and "latency_us" in r}
            if "fastmd" in pair and "picows_msgspec" in pair:
                fastmd_p99 = pair["fastmd"]["latency_us"]["p99"]
                ratio.append(fastmd_p99 / pair["picows_msgspec"]["latency_us"]["p99"])
        if ratio:
            met = statistics.median(ratio) <= 1.2
            name = f"{rate:,.0f}/s: p99 (c) <= 1.2x p99 (b)"
            goal_rows.append([name, _ratio_cell(ratio), "met" if met else "**not met**"])
    header = ["rate", "client", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs",
              "samples/run", "server sent/s"]  # fmt: skip
    out = [_table(header, rows, "llrrrrrrr")]
    if goal_rows:
        out.append(_table(["goal", "median [per repetition]", ""], goal_rows, "lrl"))
    return "\n\n".join(out)


def stage_malloc(args: argparse.Namespace, kinds: Sequence[str]) -> list[dict[str, Any]]:
    if not shutil.which("gcc") or not MALLOC_COUNTER_C.exists():
        _progress("malloc stage skipped: gcc or malloc_counter.c missing")
        return []
    results = []
    with tempfile.TemporaryDirectory(prefix="fastmd-e2e-") as tmp:
        lib = build_malloc_counter(tmp)
        env = {"PYTHONMALLOC": "malloc", "LD_PRELOAD": lib}
        for kind in kinds:
            result = run_pair(
                kind, count=args.warmup + args.malloc_messages, warmup=args.warmup, env=env,
                loop=args.loop,
            )  # fmt: skip
            results.append(result)
            _progress(f"malloc {kind}: {result.get('mallocs_per_msg', float('nan')):.2f}/msg")
    return results


def report_malloc(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        per_100k = "/".join(f"{g * 100_000 / r['messages']:.0f}" for g in r["gc_collections"])
        rows.append([
            LABELS.get(r["kind"], r["kind"]),
            _num(r.get("mallocs_per_msg", float("nan"))),
            per_100k,
            f"{r['blocks_end'] - r['blocks_start']:+,}",
            f"{r['messages']:,}",
        ])  # fmt: skip
    header = ["client", "malloc events/msg", "gc gen0/1/2 per 100k", "allocated blocks delta",
              "messages"]  # fmt: skip
    return _table(header, rows)


def stage_rss(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for kind in args.rss_clients.split(","):
        result = run_pair(
            kind, count=args.warmup + args.rss_messages, warmup=args.warmup, loop=args.loop,
            timeout=600.0,
        )  # fmt: skip
        mib = 2**20
        _progress(f"rss {kind}: {result['rss_start'] / mib:.1f} -> {result['rss_end'] / mib:.1f}")
        results.append(result)
    return results


def report_rss(results: list[dict[str, Any]]) -> str:
    header = ["client", "messages", "RSS before MiB", "RSS after MiB", "growth KiB",
              "allocated blocks delta", "gaps", "msgs/s"]  # fmt: skip
    return _table(header, [_rss_row(r) for r in results])


def _rss_row(r: dict[str, Any]) -> list[str]:
    mib = 2**20
    return [
        LABELS.get(r["kind"], r["kind"]),
        f"{r['messages']:,}",
        f"{r['rss_start'] / mib:.1f}",
        f"{r['rss_end'] / mib:.1f}",
        f"{(r['rss_end'] - r['rss_start']) / 1024:+,.0f}",
        f"{r['blocks_end'] - r['blocks_start']:+,}",
        str(r.get("gaps", "")),
        f"{r['msgs_per_s'] / 1000:,.0f}k",
    ]


def _progress(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="measured frames per run")
    parser.add_argument("--warmup", type=int, default=20_000, help="frames before measuring")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved throughput repetitions (0 skips the stage)")  # fmt: skip
    parser.add_argument("--clients", default=",".join(MAIN), help="comma-separated client kinds")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="a checkout of fastmd at an earlier commit (git worktree add DIR REV): its "
        "fastmd.Client runs as (c0) beside (c) in every stage",
    )
    parser.add_argument("--no-drain", action="store_true", help="skip the server-capacity run")
    parser.add_argument("--ladder", action="store_true", help="also run the ladder clients")
    parser.add_argument(
        "--latency-rates",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[10_000.0, 50_000.0],
        help="comma-separated frames/s; empty to skip",
    )
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--latency-warmup", type=float, default=1.0, help="seconds")
    parser.add_argument("--latency-repeat", type=int, default=3)
    parser.add_argument("--latency-rt", action="store_true",
                        help="run latency clients under chrt -f 10 (SCHED_FIFO)")  # fmt: skip
    parser.add_argument("--malloc-messages", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--rss-messages", type=int, default=1_000_000, help="0 to skip")
    parser.add_argument("--rss-clients", default="picows_msgspec,fastmd")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", metavar="FILE", help="also write every raw result to FILE")
    args = parser.parse_args(argv)

    kinds = [k for k in args.clients.split(",") if k]
    if args.baseline:
        os.environ["FASTMD_BASELINE_PATH"] = str(Path(args.baseline).resolve())
        if "fastmd_baseline" not in kinds:
            kinds.insert(kinds.index("fastmd") + 1 if "fastmd" in kinds else len(kinds),
                         "fastmd_baseline")  # fmt: skip
    if not args.no_drain:
        kinds = ["drain", *kinds]
    if args.ladder:
        kinds += [k for k in LADDER if k not in kinds]
    raw: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    sections = [f"Machine: {raw['machine']}; event loop: {args.loop}."]
    if args.repeat:
        sections.append(
            f"Throughput: {args.repeat} interleaved repetitions, {args.warmup:,} warm-up + "
            f"{args.messages:,} measured frames of {_frame_bytes()} bytes per run."
        )
    if args.repeat:
        raw["throughput"] = stage_throughput(args, kinds)
        sections.append(report_throughput(raw["throughput"], kinds))
    if "drain" in kinds and args.repeat:
        publish = run_pair("drain", count=args.warmup + args.messages, warmup=args.warmup,
                           mode="publish", loop=args.loop)  # fmt: skip
        raw["publish"] = publish
        sections.append(
            "The simulator's own publish path (`WsServer.publish` per frame, as `Exchange.flood`)"
            f" into the bare socket: {publish['server']['msgs_per_s']:,.0f} frames/s, "
            f"{publish['server']['cpu_us_per_msg']:.2f} server CPU µs/frame."
        )
    if args.latency_rates:
        raw["latency"] = stage_latency(args)
        rt = " (clients under `chrt -f 10`)" if args.latency_rt else ""
        sections.append(
            f"Latency{rt}: {args.latency_repeat} repetitions per rate, {args.latency_warmup:g} s"
            f" warm-up + {args.latency_seconds:g} s measured, send stamp to callback.\n\n"
            + report_latency(raw["latency"])
        )
    if args.malloc_messages:
        raw["malloc"] = stage_malloc(args, [k for k in kinds if k != "drain"])
        if raw["malloc"]:
            sections.append(report_malloc(raw["malloc"]))
    if args.rss_messages:
        raw["rss"] = stage_rss(args)
        sections.append(report_rss(raw["rss"]))
    print("\n\n".join(sections))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


def _frame_bytes() -> int:
    from benchmarks.e2e.common import FRAME_PAYLOAD_BYTES

    return FRAME_PAYLOAD_BYTES


if __name__ == "__main__":
    sys.exit(main())
