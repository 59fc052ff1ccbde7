"""The ``fastmd`` command line (docs/cli.md). ``main`` is its entry point (the ``fastmd``
console script and ``python -m fastmd``).

Modules, each with one job; none uses another's underscore names, and none imports a module
that imports it:

- :mod:`~fastmd.cli.entry`: the parser, the option checks, ``main``, the event loop, logging;
- :mod:`~fastmd.cli.demo`, :mod:`~fastmd.cli.watch`, :mod:`~fastmd.cli.sim`: the commands;
- :mod:`~fastmd.cli.state`: the demo's state and id ledger; :mod:`~fastmd.cli.view`: its live
  view, progress line and summary;
- :mod:`~fastmd.cli.reports`: error reports as demo and watch read them (causes, repeats folded,
  whether the exchange answered at all);
- :mod:`~fastmd.cli.common`: small helpers the commands share.
"""

from fastmd.cli.entry import main

__all__ = ["main"]
