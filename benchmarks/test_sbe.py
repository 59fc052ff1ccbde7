"""SBE decode benchmarks: the same event as an SBE frame and as a JSON frame, in one group each.

Groups ``sbe-trade``, ``sbe-trade-x10`` (one SBE frame of 10 trades: divide by 10 for a trade),
``sbe-bookTicker``, ``sbe-depthUpdate-20``, ``sbe-depth20-partial``; in each:

- ``json_hot_path``: ``Decoder.fast_decode`` of the JSON combined-stream frame (stream
  registered), what the client calls for a JSON frame;
- ``sbe_compiled``: ``Decoder(encoding="sbe").fast_decode_sbe`` of the SBE frame, the C decoder;
- ``sbe_python``: the same with the pure-Python fallback.

Frames: benchmarks/sbe_compare.py (which also prints the per-event table of docs/benchmarks.md).
Every benchmark checks its result; compare ``min`` within one run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from benchmarks.sbe_compare import SBE_CASES, SbeCase, check, json_hot_path, sbe_hot_path
from fastmd.core.sbe import compiled_available


def _by_group(cases: list[SbeCase]) -> list[Any]:
    return [
        pytest.param(case, id=case.name, marks=pytest.mark.benchmark(group=f"sbe-{case.name}"))
        for case in cases
    ]


def _info(case: SbeCase) -> dict[str, Any]:
    return {
        "events": case.events,
        "sbe_bytes": len(case.frame),
        "json_frame_bytes": len(case.json.frame),
        "json_payload_bytes": len(case.json.payload),
    }


@pytest.mark.parametrize("case", _by_group(SBE_CASES))
def test_json_hot_path(bench: Any, case: SbeCase) -> None:
    decode = json_hot_path(case.json)
    bench.extra_info.update(_info(case))
    message = bench(decode, case.json.frame)
    case.json.check_message(message)


@pytest.mark.parametrize("case", _by_group(SBE_CASES))
def test_sbe_compiled(bench: Any, case: SbeCase) -> None:
    if not compiled_available():
        if os.environ.get("CI"):
            pytest.fail("the C extension fastmd._sbe is not built (pip install -e .)")
        pytest.skip("the C extension fastmd._sbe is not built")
    decode = sbe_hot_path(True)
    bench.extra_info.update(_info(case))
    check(case, bench(decode, case.frame))


@pytest.mark.parametrize("case", _by_group(SBE_CASES))
def test_sbe_python(bench: Any, case: SbeCase) -> None:
    decode = sbe_hot_path(False)
    bench.extra_info.update(_info(case))
    check(case, bench(decode, case.frame))
