"""The public namespace: fastmd.__all__ is exactly the union of the modules' __all__."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import fastmd

MODULES = (
    "fastmd.errors",
    "fastmd.core.streams",
    "fastmd.core.events",
    "fastmd.core.rest_models",
    "fastmd.core.codec",
    "fastmd.core.backoff",
    "fastmd.core.breaker",
    "fastmd.core.liveness",
    "fastmd.core.lifecycle",
    "fastmd.core.stats",
    "fastmd.core.status",
    "fastmd.core.health",
    "fastmd.core.subscriptions",
    "fastmd.aio.connection",
    "fastmd.aio.reporting",
    "fastmd.aio.client",
    "fastmd.aio.subscriptions",
    "fastmd.aio.metrics",
    "fastmd.core.sequence",
    "fastmd.core.book",
    "fastmd.aio.book",
    "fastmd.aio.rest",
    "fastmd.aio.market",
    "fastmd.aio.record",
)


def test_all_sorted_and_unique() -> None:
    assert list(fastmd.__all__) == sorted(fastmd.__all__)
    assert len(set(fastmd.__all__)) == len(fastmd.__all__)


def test_all_is_union_of_module_all() -> None:
    union: set[str] = set()
    total = 0
    for name in MODULES:
        module_all = importlib.import_module(name).__all__
        total += len(module_all)
        union |= set(module_all)
    assert total == len(union), "a name is exported by two modules"
    assert set(fastmd.__all__) == union


@pytest.mark.parametrize("name", fastmd.__all__)
def test_every_name_resolves(name: str) -> None:
    value = getattr(fastmd, name)
    owners = [m for m in MODULES if name in importlib.import_module(m).__all__]
    assert len(owners) == 1
    assert value is getattr(importlib.import_module(owners[0]), name)
    assert name in dir(fastmd)


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        fastmd.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_key_names_exported() -> None:
    for name in ("Decoder", "Message", "StreamNameError", "DecodeError", "DecodeErrorCategory",
                 "parse_stream", "build_stream", "futures_route", "Trade", "DepthSnapshot",
                 "ControlReply"):  # fmt: skip
        assert name in fastmd.__all__


def test_py_typed() -> None:
    package = Path(fastmd.__file__).parent
    assert (package / "py.typed").is_file()
