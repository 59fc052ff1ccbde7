"""``fastmd record`` and ``fastmd replay``, run as a user runs them: ``python -m fastmd ...`` in a
subprocess, against the embedded simulator, a simulator of the test's own (``--url``), and each
other (a recording served by ``fastmd replay`` read back by a client)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import REPO, fastmd_cli, repo_env

import fastmd
import fastmd.replay
from fastmd.sim import Exchange


async def fastmd_cli_async(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastmd", *args, env=repo_env(), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_record_the_embedded_simulator(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    result = fastmd_cli(
        "record", "btcusdt@trade", "btcusdt@depth@100ms", "--out", str(out), "--duration", "6",
        "--compression", "gzip",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == f"fastmd record: 2 streams from the simulator (BTCUSDT, ETHUSDT, BNBUSDT) to {out}"
    )
    # Not a terminal: plain progress lines (the first after a second, then every 5 s)
    progress = [line for line in lines[1:-1] if re.search(r"\d+ frames \(\d+/s\)", line)]
    assert len(progress) >= 2, result.stdout
    match = re.fullmatch(r"fastmd record: done\. .* (\d+) frames .* (\d+) snapshots .*", lines[-1])
    assert match, lines[-1]
    manifest = fastmd.replay.manifest(out)
    assert manifest["complete"] is True
    assert manifest["compression"] == "gzip"
    assert int(match.group(1)) == manifest["frames"] > 0
    assert int(match.group(2)) == manifest["snapshots"] >= 1
    streams = {message.stream for message in fastmd.replay.events(out)}
    assert streams == {"btcusdt@trade", "btcusdt@depth@100ms"}


async def test_record_a_simulator_by_url_then_replay_it_to_a_client(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    streams = ["ethusdt@trade", "ethusdt@bookTicker"]
    async with Exchange("binance-spot", ["ETHUSDT"], seed=3, rate=300.0) as ex:
        code, stdout, stderr = await fastmd_cli_async(
            "record", *streams, "--out", str(out), "--duration", "1.5",
            "--url", ex.ws_url, "--rest-url", ex.rest_url,
        )  # fmt: skip
    assert code == 0, stdout + stderr
    assert f"from {ex.ws_url} to {out}" in stdout.splitlines()[0]
    expected = [(m.stream, m.event) for m in fastmd.replay.events(out)]
    assert len(expected) > 20

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastmd", "replay", str(out), "--fast", "--linger", "0.5",
        env=repo_env(), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        header = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert "as fast as possible" in header
        assert f"{len(expected)} frames of 2 streams" in header
        urls = (await asyncio.wait_for(process.stdout.readline(), 5)).decode()
        found = re.search(r"ws_url=(\S+) rest_url=(\S+)", urls)
        assert found, urls
        received: list[tuple[str, object]] = []
        async with fastmd.Client(ws_url=found.group(1), rest_url=found.group(2)) as client:
            for stream in streams:
                client.subscribe(stream, lambda event, s=stream: received.append((s, event)))
            rest, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert f"fastmd replay: {len(expected)} frames served" in rest.decode()
    assert received == expected


def test_usage_errors_exit_2_and_name_the_option(tmp_path: Path) -> None:
    missing_out = fastmd_cli("record", "btcusdt@trade")
    assert missing_out.returncode == 2
    assert "--out" in missing_out.stderr
    bad_stream = fastmd_cli("record", "btcusdt@tradez", "--out", str(tmp_path / "x"))
    assert bad_stream.returncode == 2
    assert "argument STREAM" in bad_stream.stderr
    rest_only = fastmd_cli(
        "record", "btcusdt@trade", "--out", str(tmp_path / "x"), "--rest-url", "http://h"
    )
    assert rest_only.returncode == 2
    assert "--rest-url: needs --url" in rest_only.stderr
    both = fastmd_cli("replay", str(tmp_path), "--fast", "--speed", "2")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_no_recording_or_already_one_exits_1(tmp_path: Path) -> None:
    result = fastmd_cli("replay", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "is not a recording: no such folder" in result.stderr
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "manifest.json").write_text(json.dumps({"format": "fastmd-recording"}))
    again = fastmd_cli("record", "btcusdt@trade", "--out", str(tmp_path / "rec"), "--duration", "1")
    assert again.returncode == 1
    assert "already holds a recording" in again.stderr


def test_record_gives_up_on_an_exchange_that_is_not_there(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    started = time.monotonic()
    result = fastmd_cli(
        "record", "btcusdt@trade", "--out", str(tmp_path / "rec"), "--give-up-after", "1.5",
        "--url", f"ws://127.0.0.1:{port}", "--rest-url", f"http://127.0.0.1:{port}",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing received from ws://127.0.0.1" in result.stderr
    assert time.monotonic() - started < 20
    manifest = fastmd.replay.manifest(tmp_path / "rec")
    assert manifest["frames"] == 0
    assert manifest["complete"] is True


def test_record_shows_live_progress_in_a_real_terminal(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = f"fastmd-record-{os.getpid()}"
    out = tmp_path / "rec"
    command = (
        f"cd {REPO} && PYTHONPATH={REPO} {sys.executable} -m fastmd record btcusdt@trade "
        f"--out {out} --duration 6; sleep 10"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "10", command], check=True
    )
    try:
        time.sleep(4.0)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    live = [line for line in screen.splitlines() if line.startswith("recording  ")]
    assert len(live) == 1, screen  # one line, redrawn in place
    assert re.search(r"\d+ frames \(\d+/s\)", live[0]), screen
