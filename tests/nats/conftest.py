"""A real ``nats-server`` per test, on 127.0.0.1 and a free port (Debian's ``nats-server``,
installed by ``.ci/run``). Missing: the tests fail when ``CI`` is set, and skip otherwise."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testdata import RECORDING

import fastmd

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'fastmd[nats]'")


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` every 20 ms until it holds; ``TimeoutError`` after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls state owned by other objects
            await asyncio.sleep(0.02)


def recorded_events() -> list[tuple[str, Any]]:
    """The recorded session's (stream, event) pairs in order, decoded as ``binance-spot``."""
    decoder = fastmd.Decoder("binance-spot")
    out = []
    for line in (RECORDING / "stream.jsonl").read_text().splitlines():
        envelope = json.loads(line)["msg"]
        out.append((envelope["stream"], decoder.decode(json.dumps(envelope).encode()).event))
    return out


def by_stream(events: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    """``events`` grouped by stream, each stream's events in their order."""
    out: dict[str, list[Any]] = defaultdict(list)
    for stream, event in events:
        out[stream].append(event)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One nats-server process that can be stopped and started again on the same port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, jetstream: bool = False) -> None:
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]
        if jetstream:
            command += ["-js", "-sd", str(self.workdir / "js")]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start listening within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


def nats_binary() -> str:
    """The nats-server binary, or fail (CI) / skip (elsewhere)."""
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed (apt-get install nats-server): CI is set")
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    return binary


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started nats-server; killed at teardown."""
    server = NatsServer(nats_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jetstream_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started nats-server with JetStream (its store in the test's temporary folder)."""
    server = NatsServer(nats_binary(), tmp_path)
    server.start(jetstream=True)
    try:
        yield server
    finally:
        server.stop()
