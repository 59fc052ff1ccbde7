"""Draw the benchmark plots of docs/benchmarks.md from the committed results.

``python -m benchmarks.plots [--results benchmarks/results] [--out docs/images]``

Reads the raw results of one measuring session (``benchmarks/results/README.md`` says how each
file was made, when, and on which commit), never measures anything itself:

- ``e2e.json``: ``python -m benchmarks.e2e.run --json`` (throughput, malloc, RSS);
- ``e2e-latency-rt.json``: the latency stage again, clients under ``chrt -f 10``;
- ``e2e-events.json``: ``python -m benchmarks.e2e.events --json`` (throughput per event type);
- ``decode.json``: ``pytest benchmarks/test_decode.py --benchmark-json`` (in-process decodes).

and writes PNGs (matplotlib's Agg backend, no display needed):

- ``e2e-throughput.png``: messages/s of each client over loopback, median of the repetitions with
  their range, and each client's ratio to fastmd;
- ``e2e-events.png``: client CPU per message of fastmd, bare picows + msgspec, aiohttp + orjson
  and websockets + json per event type, with the throughput ratio it implies for fastmd
  against each (steadier than messages/s on a shared machine: docs/benchmarks.md);
- ``e2e-latency.png``: send-to-callback latency percentiles of fastmd and bare picows + msgspec at
  each rate;
- ``decode-per-event.png``: per event type, the decode each client stack runs on one frame:
  fastmd's hot path, a typed msgspec decode (as bare picows + msgspec), ``orjson.loads`` (as
  aiohttp + orjson) and ``json.loads`` (as websockets + json);

The ``docs`` extra installs matplotlib. docs/hooks.py runs this script on every site build, so a
results file it can no longer read fails ``mkdocs build``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen before pyplot loads

from benchmarks.report import load as load_pytest_benchmark, ns

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"

# e2e client kinds (benchmarks/e2e/run.py) in plot order, with their labels
E2E_CLIENTS = {
    "picows": "bare picows,\nno decode",
    "picows_msgspec": "bare picows\n+ msgspec",
    "fastmd": "fastmd.Client",
    "aiohttp_orjson": "aiohttp\n+ orjson",
    "websockets_json": "websockets\n+ json",
}
FASTMD_COLOUR = "#d9480f"
OTHER_COLOUR = "#5c7cfa"
REFERENCE_COLOUR = "#adb5bd"

# decode benchmarks (benchmarks/test_decode.py): test name -> the client stack it stands for
DECODERS = {
    "fastmd_combined_hot_path": "fastmd (Decoder.fast_decode, as the client runs it)",
    "msgspec_bare_typed": "typed msgspec, payload only (as bare picows + msgspec)",
    "orjson_loads": "orjson.loads (as aiohttp + orjson)",
    "json_loads": "json.loads (as websockets + json)",
}
DECODER_COLOURS = ("#d9480f", "#5c7cfa", "#40c057", "#868e96")
PERCENTILES = ("p50", "p90", "p99", "p99.9")


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _machine(e2e: dict[str, Any]) -> str:
    """run.py's machine line; a run from a ``git archive`` snapshot knows no commit (its
    results README names it)."""
    return str(e2e["machine"]).replace("; commit ?", "")


def _footnote(fig: Any, text: str) -> None:
    fig.text(0.01, 0.01, text, fontsize=7, color="#495057", ha="left", va="bottom", wrap=True)


def plot_throughput(e2e: dict[str, Any], out: Path) -> Path:
    """Bars of messages/s per client (median of the repetitions, min-max as error bars)."""
    runs = e2e["throughput"]
    kinds = [k for k in E2E_CLIENTS if any(r["kind"] == k for r in runs)]
    rates = {k: [r["msgs_per_s"] for r in runs if r["kind"] == k] for k in kinds}
    medians = [statistics.median(rates[k]) for k in kinds]
    low = [m - min(rates[k]) for m, k in zip(medians, kinds, strict=True)]
    high = [max(rates[k]) - m for m, k in zip(medians, kinds, strict=True)]
    fastmd_rate = medians[kinds.index("fastmd")]
    colours = [
        FASTMD_COLOUR if k == "fastmd" else REFERENCE_COLOUR if k == "picows" else OTHER_COLOUR
        for k in kinds
    ]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    bars = ax.bar(
        [E2E_CLIENTS[k] for k in kinds],
        [m / 1e6 for m in medians],
        yerr=[[v / 1e6 for v in low], [v / 1e6 for v in high]],
        color=colours,
        capsize=4,
    )
    for bar, kind, median, above in zip(bars, kinds, medians, high, strict=True):
        note = f"{median / 1e3:,.0f}k/s"
        if kind == "picows":
            note += "\n(no decode: the ceiling)"
        elif kind != "fastmd":
            note += f"\nfastmd = {fastmd_rate / median:.2f}x"
        ax.annotate(
            note,
            (bar.get_x() + bar.get_width() / 2, (median + above) / 1e6),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    repeat = e2e["args"]["repeat"]
    messages = e2e["args"]["messages"]
    ax.set_ylabel("trade frames per second (millions)")
    ax.set_title(f"End to end over loopback: throughput (median of {repeat} interleaved runs)")
    ax.set_ylim(0, max(m + h for m, h in zip(medians, high, strict=True)) / 1e6 * 1.25)
    ax.grid(axis="y", alpha=0.3)
    _footnote(
        fig,
        f"{messages:,} measured trade frames per run, one client process at a time on its own "
        f"core; {_machine(e2e)}",
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = out / "e2e-throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


EVENT_CLIENTS = {
    "picows_msgspec": ("bare picows + msgspec", OTHER_COLOUR),
    "fastmd": ("fastmd.Client", FASTMD_COLOUR),
    "aiohttp_orjson": ("aiohttp + orjson", "#40c057"),
    "websockets_json": ("websockets + json", "#868e96"),
}


def plot_events(runs_file: dict[str, Any], out: Path) -> Path:
    """Per event type, grouped bars of each client's CPU per message (median of the
    repetitions), and above each group the throughput ratio that CPU implies for fastmd
    against each other client (their CPU / fastmd's)."""
    runs = runs_file["runs"]
    events = list(dict.fromkeys(r["event"] for r in runs))
    kinds = [k for k in EVENT_CLIENTS if any(r["kind"] == k for r in runs)]

    def cpu(event: str, kind: str) -> float:
        return statistics.median(
            r["cpu_us_per_msg"] for r in runs if r["event"] == event and r["kind"] == kind
        )

    fig, ax = plt.subplots(figsize=(10, 5.2))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        label, colour = EVENT_CLIENTS[kind]
        xs = [x + (i - (len(kinds) - 1) / 2) * width for x in range(len(events))]
        ax.bar(xs, [cpu(e, kind) for e in events], width, label=label, color=colour)
    for x, event in enumerate(events):
        fast = cpu(event, "fastmd")
        ratios = "\n".join(
            f"{cpu(event, kind) / fast:.2f}x {short}"
            for kind, short in (
                ("picows_msgspec", "(b)"),
                ("aiohttp_orjson", "(e)"),
                ("websockets_json", "(d)"),
            )
            if kind in kinds
        )
        ax.annotate(
            "fastmd:\n" + ratios,
            (x, max(cpu(event, kind) for kind in kinds)),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    top = max(cpu(e, k) for e in events for k in kinds)
    ax.set_ylim(0, top * 1.3)
    ax.set_xticks(range(len(events)), [e.replace(" (", "\n(") for e in events], fontsize=8)
    ax.set_ylabel("client CPU µs per message (lower is better)")
    args = runs_file["args"]
    ax.set_title(
        f"End to end over loopback, per event type: client CPU per message (median of "
        f"{args['repeat']} runs)"
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    _footnote(
        fig,
        "above each group: fastmd's throughput as implied by CPU per message, against (b) bare "
        "picows + msgspec, (e) aiohttp + orjson, (d) websockets + json; "
        f"{args['messages']:,} measured frames per run; {_machine(runs_file)}",
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = out / "e2e-events.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(latency: dict[str, Any], out: Path) -> Path:
    """Grouped bars: the median over repetitions of each percentile, per rate and client."""
    runs = [r for r in latency["latency"] if "latency_us" in r]
    rates = sorted({r["rate"] for r in runs})
    clients = [("picows_msgspec", "bare picows + msgspec"), ("fastmd", "fastmd.Client")]
    fig, axes = plt.subplots(1, len(rates), figsize=(8, 4.2), sharey=True, squeeze=False)
    width = 0.38
    for ax, rate in zip(axes[0], rates, strict=True):
        for i, (kind, label) in enumerate(clients):
            mine = [r for r in runs if r["rate"] == rate and r["kind"] == kind]
            if not mine:
                continue
            values = [statistics.median(r["latency_us"][q] for r in mine) for q in PERCENTILES]
            xs = [x + (i - 0.5) * width for x in range(len(PERCENTILES))]
            colour = FASTMD_COLOUR if kind == "fastmd" else OTHER_COLOUR
            bars = ax.bar(xs, values, width, label=label, color=colour)
            for bar, value in zip(bars, values, strict=True):
                ax.annotate(
                    f"{value:,.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
        ax.set_xticks(range(len(PERCENTILES)), PERCENTILES)
        ax.set_title(f"{rate:,.0f} frames/s")
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("send stamp to callback, µs (log scale)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    args = latency["args"]
    rt = ", clients under chrt -f 10" if args.get("latency_rt") else ""
    fig.suptitle(f"End to end over loopback: latency (median of {args['latency_repeat']} runs{rt})")
    _footnote(
        fig,
        f"{args['latency_warmup']:g} s warm-up + {args['latency_seconds']:g} s measured per run; "
        f"{_machine(latency)}",
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = out / "e2e-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_decode(decode_json: Path, out: Path) -> Path:
    """Per event type, grouped bars of the ns per frame of each decoder (pytest-benchmark min)."""
    groups = load_pytest_benchmark(decode_json)
    events = [g for g, benches in groups.items() if all(d in benches for d in DECODERS)]
    if not events:
        raise ValueError(f"{decode_json}: no event group holds all of {sorted(DECODERS)}")
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(DECODERS)
    for i, (name, label) in enumerate(DECODERS.items()):
        values = [ns(groups[event][name]) for event in events]
        xs = [x + (i - (len(DECODERS) - 1) / 2) * width for x in range(len(events))]
        ax.bar(xs, values, width, label=label, color=DECODER_COLOURS[i])
    for x, event in enumerate(events):
        fast = ns(groups[event]["fastmd_combined_hot_path"])
        slowest = max(ns(groups[event][name]) for name in DECODERS)
        ratio = ns(groups[event]["json_loads"]) / fast
        ax.annotate(
            f"json.loads:\n{ratio:.1f}x fastmd",
            (x, slowest),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    top = max(ns(groups[event][name]) for event in events for name in DECODERS)
    ax.set_ylim(0, top * 1.12)
    ax.set_xticks(range(len(events)), [e.replace(", ", "\n") for e in events], fontsize=8)
    ax.set_ylabel("ns per frame (min of the rounds)")
    ax.set_title("Decode of one frame, per event type, in process (lower is better)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    machine = load_machine(decode_json)
    _footnote(fig, f"pytest-benchmark, benchmarks/test_decode.py; {machine}")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = out / "decode-per-event.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_machine(decode_json: Path) -> str:
    """A one-line description of the machine and versions of a pytest-benchmark JSON file."""
    info = _read_json(decode_json)
    machine = info.get("machine_info", {})
    commit = str(info.get("commit_info", {}).get("id") or "")
    commit = commit[:7] if re.fullmatch(r"[0-9a-f]{7,40}", commit) else ""
    cpu = machine.get("cpu", {}).get("brand_raw", "?")
    return (
        f"{cpu}, Python {machine.get('python_version', '?')}"
        + (f", commit {commit}" if commit else "")
        + f", {info.get('datetime', '')[:10]}"
    )


def draw(results: Path, out: Path) -> list[Path]:
    """Every plot, from the files of ``results``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    e2e = _read_json(results / "e2e.json")
    latency_file = results / "e2e-latency-rt.json"
    latency = _read_json(latency_file) if latency_file.exists() else e2e
    made = [
        plot_throughput(e2e, out),
        plot_latency(latency, out),
        plot_events(_read_json(results / "e2e-events.json"), out),
        plot_decode(results / "decode.json", out),
    ]
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go")
    args = parser.parse_args(argv)
    for path in draw(args.results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
