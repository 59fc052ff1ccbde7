"""fastmd's exchange simulator: a Binance-compatible WebSocket and REST server on loopback.

``fastmd.sim.Exchange`` is the default target of ``fastmd demo``, of fastmd's tests and benchmarks,
and a tool for testing your own bot without the internet. See ``docs/simulator.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Exchange", "Fault", "Faults", "Market", "Recording", "SimLimits", "SymbolSpec"]

_EXPORTS = {
    "Exchange": "fastmd.sim.exchange",
    "Fault": "fastmd.sim.exchange",
    "Faults": "fastmd.sim.exchange",
    "Market": "fastmd.sim.market",
    "SymbolSpec": "fastmd.sim.market",
    "Recording": "fastmd.sim.replay",
    "SimLimits": "fastmd.sim.limits",
}

if TYPE_CHECKING:
    from fastmd.sim.exchange import Exchange, Fault, Faults
    from fastmd.sim.limits import SimLimits
    from fastmd.sim.market import Market, SymbolSpec
    from fastmd.sim.replay import Recording


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastmd.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
