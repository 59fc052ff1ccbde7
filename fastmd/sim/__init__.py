"""fastmd's exchange simulator: a Binance-compatible WebSocket and REST server on loopback.

``fastmd.sim.Exchange`` is the default target of ``fastmd demo``, of fastmd's tests and benchmarks,
and a tool for testing your own bot without the internet.
"""
