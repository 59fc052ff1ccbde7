"""The hot path: the function picows calls with every frame of a pooled socket.

Decode first (one msgspec pass), look at the frame type only when that fails, then the stream's
sequencer and its callbacks, all synchronously, one Python call deep. Frames it does not consume
(pings, pongs, closes, fragments, frames with reserved bits) go back to the connection; a
complete binary frame is a decode error (``binary_frame``), the socket stays up. No await, task,
future, dict or closure per message; callbacks are called directly.

A frame that decodes is data, whatever its header says: the frame type is read only when
decoding fails, which keeps the hot path at one call and one decode. So a binary frame, a frame
with reserved bits, or a first or stray fragment that happens to hold one complete JSON message is
delivered as data (the connection checks every frame the router declines, and every frame while a
fragmented message is being assembled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from picows import WSFrame, WSMsgType, WSTransport

from fastmd.aio.routes import TIMING_EVERY, RouteTable
from fastmd.core.codec import Decoder, Message
from fastmd.core.events import ControlReply
from fastmd.errors import DecodeError

__all__: list[str] = []

_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY

FrameHandler = Callable[[WSTransport, WSFrame], None]


def frame_router(
    decoder: Decoder,
    routes: RouteTable,
    handle_frame: FrameHandler,
    *,
    on_reply: Callable[[ControlReply], None],
    on_unrouted: Callable[[Message[Any]], None],
    on_decode_error: Callable[[DecodeError], None],
) -> tuple[FrameHandler, Callable[[], int]]:
    """The frame handler of one socket, and a function that counts the data frames it consumed.
    A message that came in fragments reaches the handler once, assembled by the connection, as
    one frame.

    Args:
        decoder: the socket's decoder (streams registered as they are subscribed).
        routes: where each message's stream is looked up.
        handle_frame: the connection's own handler, for frames the router does not consume.
        on_reply: control replies (SUBSCRIBE acknowledgements...).
        on_unrouted: messages of no route (``serverShutdown``, a stream just unsubscribed).
        on_decode_error: frames that cannot be decoded (already counted by the decoder).
    """
    get_route = routes.get
    callback_failed = routes.callback_failed
    dispatch_timed = routes.dispatch_timed
    countdown = TIMING_EVERY  # closure cells: cheaper than attributes per frame
    consumed = 0

    def on_frame(transport: WSTransport, frame: WSFrame) -> None:
        nonlocal countdown, consumed
        payload = frame.get_payload_as_memoryview()
        try:
            message = decoder.fast_decode(payload)
        except Exception as exc:
            msg_type = frame.msg_type
            reserved = frame.rsv1 or frame.rsv2 or frame.rsv3
            if msg_type is not _TEXT or not frame.fin or reserved:
                if msg_type is _BINARY and frame.fin and not reserved:
                    consumed += 1
                    on_decode_error(decoder.reject_binary(payload))
                else:
                    handle_frame(transport, frame)
                return
            consumed += 1
            try:
                message = decoder.recover(payload, exc)
            except DecodeError as error:
                on_decode_error(error)
                return
            if type(message) is ControlReply:
                on_reply(message)
                return
        else:
            consumed += 1
        route = get_route(message.stream)
        if route is None:
            on_unrouted(message)
            return
        event = message.event
        check = route.check
        if check is not None and not check(event):
            return
        route.events += 1
        countdown -= 1
        if countdown:
            single = route.single
            if single is not None:
                try:
                    single(event)
                except Exception as exc:
                    callback_failed(route, exc)
            else:
                for callback in route.callbacks:
                    try:
                        callback(event)
                    except Exception as exc:
                        callback_failed(route, exc)
        else:
            countdown = TIMING_EVERY
            dispatch_timed(route, event, transport)

    def count() -> int:
        return consumed

    return on_frame, count
