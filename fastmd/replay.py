"""``fastmd.replay``: a recording's events offline, for backtests (docs/recording.md).

``events(path)`` reads a folder written by ``fastmd record`` / :func:`fastmd.record` and yields
every market-data message it holds as a :class:`fastmd.Message` (``.stream``, ``.event``), in
recorded order, without sockets or an event loop: the chunks are decompressed as a stream (one
block in memory at a time) and each frame is decoded once, from a view of the decompressed block,
by one :class:`fastmd.Decoder`, the one the live client uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastmd.core.codec import Decoder, Message, PriceType
from fastmd.core.events import ControlReply
from fastmd.errors import (
    DecodeError,
    RecordingCorrupt,
    RecordingNotFound,
    RecordingTruncated,
)
from fastmd.sim.replay import (
    KIND_FRAME,
    KIND_FRAME_BINARY,
    KIND_GAP,
    KIND_REST,
    ChunkTruncated,
    NotARecording,
    RecordingDamaged,
    iter_records,
    query_params,
    read_manifest,
    split_rest,
)

__all__ = [
    "RecordedRest", "convert", "events", "gaps", "manifest", "records", "rest_responses",
]  # fmt: skip


def manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The recording's manifest (venue, streams, versions, start and end, chunks, gaps...).

    Raises:
        RecordingNotFound: no such folder, or no ``manifest.json`` in it.
        RecordingCorrupt: the manifest is damaged or of another format version.
    """
    try:
        return read_manifest(path)
    except NotARecording as exc:
        raise RecordingNotFound(str(exc), path=str(path)) from exc
    except RecordingDamaged as exc:
        raise RecordingCorrupt(str(exc), path=str(exc.path)) from exc


@dataclass(frozen=True, slots=True)
class RecordedRest:
    """A REST response the recorder's client received: ``endpoint`` (``"depth"``,
    ``"exchangeInfo"``), its query parameters, and the body exactly as received."""

    time_ns: int
    endpoint: str
    params: dict[str, str]
    body: bytes


def records(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, memoryview]]:
    """``(kind, time_ns, payload)`` of every record, in recorded order (kinds in
    docs/recording.md: 1 text frame, 2 binary frame, 3 REST response, 4 gap). The payload is a
    view valid until the next step.

    Raises:
        RecordingNotFound, RecordingCorrupt: as :func:`events`.
        RecordingTruncated: after the last complete record of a truncated last chunk.
    """
    count = 0
    try:
        for record in iter_records(path):
            count += 1
            yield record
    except NotARecording as exc:
        raise RecordingNotFound(str(exc), path=str(path)) from exc
    except ChunkTruncated as exc:
        raise RecordingTruncated(str(exc), path=str(exc.path), records=count) from exc
    except RecordingDamaged as exc:
        raise RecordingCorrupt(str(exc), path=str(exc.path)) from exc


def events(
    path: str | os.PathLike[str],
    *,
    price_type: PriceType = float,
    on_decode_error: Callable[[DecodeError], object] | None = None,
) -> Iterator[Message[Any]]:
    """Every market-data message of the recording at ``path``, in recorded order.

    Control replies (``{"result": null, "id": 1}``) are left out; REST responses and gaps are
    not events (read them with :func:`records` and :func:`rest_responses`).

    Args:
        path: the recording's folder.
        price_type: ``float``, ``str`` or ``Decimal`` for prices and quantities.
        on_decode_error: called with each frame that cannot be decoded, which is then skipped;
            by default the :class:`fastmd.DecodeError` is raised.

    Raises:
        RecordingNotFound: no such folder, or no ``manifest.json`` in it (raised by the call
            itself; the errors below while iterating).
        RecordingCorrupt: a damaged manifest, a corrupt chunk, a chunk the manifest lists that
            is missing.
        RecordingTruncated: the last chunk is cut short (a killed recorder): raised after every
            message before the cut was yielded.
        DecodeError: a frame that cannot be decoded (a binary frame too: category
            ``binary_frame``), without ``on_decode_error``.
    """
    info = manifest(path)
    decoder = Decoder(info.get("venue", "binance-spot"), price_type=price_type)
    decoder.register(str(name) for name in info.get("streams", ()))
    return _decoded(path, decoder, on_decode_error)


def _decoded(
    path: str | os.PathLike[str],
    decoder: Decoder,
    on_decode_error: Callable[[DecodeError], object] | None,
) -> Iterator[Message[Any]]:
    decode = decoder.decode
    control = ControlReply
    for kind, _, payload in records(path):
        if kind != KIND_FRAME:
            if kind == KIND_FRAME_BINARY:  # said, not skipped silently: as the live client does
                error = decoder.reject_binary(payload)
                if on_decode_error is None:
                    raise error
                on_decode_error(error)
            continue
        try:
            message = decode(payload)
        except DecodeError as error:
            if on_decode_error is None:
                raise
            on_decode_error(error)
            continue
        if type(message) is not control:
            yield message


def rest_responses(path: str | os.PathLike[str]) -> Iterator[RecordedRest]:
    """The REST responses of the recording (depth snapshots, exchangeInfo), in recorded order.

    Raises:
        RecordingNotFound, RecordingCorrupt, RecordingTruncated: as :func:`records`.
    """
    for kind, time_ns, payload in records(path):
        if kind == KIND_REST:
            yield RecordedRest(time_ns, *split_rest(payload))


def gaps(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The gaps the recorder's client reported, in recorded order (``stream``, ``expected``,
    ``received``, ``missing``, ``reason``, ``time_ns``).

    Raises:
        RecordingNotFound, RecordingCorrupt, RecordingTruncated: as :func:`records`.
    """
    for kind, _, payload in records(path):
        if kind == KIND_GAP:
            yield json.loads(bytes(payload))


def convert(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    compression: Literal["zstd", "gzip"] = "zstd",
) -> int:
    """Write a recording of the older layout (``meta.json``, ``stream.jsonl``,
    ``snapshots/<SYMBOL>.json``; tests/data/README.md) as a session in the format of
    ``fastmd record``, at ``target``; returns the number of frames written.

    Frames and snapshots keep their receive times and are merged in time order; each frame is
    its envelope as compact JSON (the old layout kept parsed JSON, not the bytes received).

    Raises:
        RecordingNotFound: ``source`` is not a recording of the older layout.
        RecordingCorrupt: a line of ``stream.jsonl`` or a snapshot file is not what the layout
            holds.
        RecordingError: ``target`` already holds a recording or cannot be written.
    """
    from fastmd.aio.record import SessionWriter

    folder = Path(source)
    meta_file, stream_file = folder / "meta.json", folder / "stream.jsonl"
    if not meta_file.is_file() or not stream_file.is_file():
        raise RecordingNotFound(
            f"{folder} is not a recording of the older layout: meta.json and stream.jsonl needed",
            path=str(folder),
        )
    items: list[tuple[float, int, str, dict[str, str], bytes]] = []
    streams: dict[str, None] = {}
    where = str(meta_file)
    try:
        meta = json.loads(meta_file.read_text())
        for number, line in enumerate(stream_file.read_bytes().splitlines()):
            where = f"{stream_file}:{number + 1}"
            if line.strip():
                record = json.loads(line)
                streams[str(record["msg"]["stream"])] = None
                frame = json.dumps(record["msg"], separators=(",", ":")).encode()
                items.append((float(record["ts"]), number, "", {}, frame))
        for file in sorted((folder / "snapshots").glob("*.json")):
            where = str(file)
            snapshot = json.loads(file.read_text())
            params = query_params(snapshot["url"].partition("?")[2])
            body = json.dumps(snapshot["body"], separators=(",", ":")).encode()
            items.append((float(snapshot["ts"]), -1, "depth", params, body))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordingCorrupt(
            f"{where}: not what the older layout holds ({exc!r})", path=str(folder)
        ) from exc
    items.sort(key=lambda item: (item[0], item[1]))
    url = str(meta.get("url", ""))
    subscribed = url.partition("streams=")[2]
    if subscribed:  # every stream subscribed, also those that sent nothing
        streams = dict.fromkeys([*subscribed.split("/"), *streams])
    now = [0]
    writer = SessionWriter(
        target,
        venue=meta.get("venue", "binance-spot"),
        streams=list(streams),
        compression=compression,
        clock_ns=lambda: now[0],
        extra={
            "source": meta.get("source"),
            "converted_from": f"{folder.name}: the older layout (meta.json, stream.jsonl)",
        },
    )
    now[0] = int(items[0][0] * 1e9) if items else 0
    writer.open(url.partition("/stream?")[0], "https://api.binance.com")
    for ts, _, endpoint, params, payload in items:
        now[0] = int(ts * 1e9)
        if endpoint:
            writer.rest_response(endpoint, params, payload)
        else:
            writer.frame(memoryview(payload), False)
    writer.close()
    return sum(1 for item in items if not item[2])
