"""Benchmark harness: rounds long enough to time sub-microsecond calls, groups run back to back.

Two things plain ``benchmark(fn, arg)`` gets wrong for decodes of 200-500 ns on a shared machine:

- its calibration often settles on one call per round, so every round also times the two
  ``perf_counter()`` calls around it (and their ~10 ns granularity): the ``min`` of a 250 ns decode
  then reads 330-550 ns and ratios are meaningless. The :func:`bench` fixture estimates the cost
  first and runs ``benchmark.pedantic`` with enough iterations for rounds of about 200 µs;
- pytest collects ``test_a[trade]``, ``test_a[kline]``, ..., then ``test_b[trade]``: the members of
  one group would run seconds apart while the machine's load changes. Ratios are computed within a
  group, so :func:`pytest_collection_modifyitems` runs each group's members together.

With ``--benchmark-disable`` (CI), :func:`bench` calls the function once, like ``benchmark``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

ROUND_SECONDS = 200e-6
"""Target duration of one timed round (many calls of the benchmarked function)."""
MIN_ROUNDS = 25


def _group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("benchmark")
    group = marker.kwargs.get("group") if marker is not None else None
    return group if isinstance(group, str) else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first_seen: dict[str | None, int] = {}
    for item in items:
        first_seen.setdefault(_group(item), len(first_seen))
    items.sort(key=lambda item: first_seen[_group(item)])


def _cost(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """Seconds per call, roughly: doubles the loop until it lasts 2 ms."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn(*args, **kwargs)
        elapsed = time.perf_counter() - start
        if elapsed > 2e-3:
            return elapsed / loops
        loops *= 2


class Bench:
    """``bench(fn, *args, **kwargs)``: benchmark ``fn`` and return its result."""

    def __init__(self, benchmark: Any, max_time: float) -> None:
        self.benchmark = benchmark
        self.extra_info: dict[str, Any] = benchmark.extra_info
        self.max_time = max_time

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.benchmark.disabled:
            return self.benchmark(fn, *args, **kwargs)
        per_call = _cost(fn, args, kwargs)  # also the warm-up
        iterations = max(1, round(ROUND_SECONDS / per_call))
        rounds = max(MIN_ROUNDS, round(self.max_time / (iterations * per_call)))
        self.extra_info.update(iterations=iterations, rounds=rounds)
        return self.benchmark.pedantic(
            fn, args=args, kwargs=kwargs, iterations=iterations, rounds=rounds
        )


@pytest.fixture
def bench(benchmark: Any, request: pytest.FixtureRequest) -> Bench:
    max_time = float(request.config.getoption("benchmark_max_time"))
    return Bench(benchmark, max_time)
