"""End-to-end loopback benchmark: a flood server process (fastmd's simulator) feeding one client
process at a time (bare picows, bare picows + msgspec, fastmd.Client, websockets + json,
aiohttp + orjson). ``python -m benchmarks.e2e.run --help``; method in docs/benchmarks.md."""
