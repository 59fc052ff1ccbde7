"""The hot path of an SBE connection (``Client(encoding="sbe")``): the function picows calls with
every frame of a pooled socket that carries Binance's binary market data.

Binance's SBE endpoint sends market events as binary frames (one SBE message each, several trades
in a trades message) and control replies and ``serverShutdown`` as JSON text. So the frame type
decides: a complete binary frame is decoded once by the socket's SBE decoder (C's
:meth:`fastmd.Decoder.decode_sbe`) into its messages, all of one stream, looked up once per frame,
each event checked by the stream's sequencer and given to its callbacks directly; a complete text
frame goes to the JSON decoder (control replies, ``serverShutdown``). Everything else (pings,
pongs, closes, fragments, reserved bits) goes back to the connection. No await, task, future,
dict or closure per message; a frame that does not decode is reported and the socket stays up.
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


def sbe_frame_router(
    decoder: Decoder,
    routes: RouteTable,
    handle_frame: FrameHandler,
    *,
    on_reply: Callable[[ControlReply], None],
    on_unrouted: Callable[[Message[Any]], None],
    on_decode_error: Callable[[DecodeError], None],
) -> tuple[FrameHandler, Callable[[], int]]:
    """The frame handler of one SBE socket, and a function that counts the data frames it
    consumed; the same contract as :func:`fastmd.aio.router.frame_router`.

    Args:
        decoder: the socket's decoder, built with ``encoding="sbe"``.
        routes: where each message's stream is looked up.
        handle_frame: the connection's own handler, for frames the router does not consume.
        on_reply: control replies (SUBSCRIBE acknowledgements...), JSON text.
        on_unrouted: messages of no route (``serverShutdown``, a stream just unsubscribed).
        on_decode_error: frames that cannot be decoded (already counted by the decoder).
    """
    decode_sbe = decoder.fast_decode_sbe  # the transport caps frame size (max_frame_size)
    decode_json = decoder.decode_json
    get_route = routes.get
    callback_failed = routes.callback_failed
    dispatch_timed = routes.dispatch_timed
    countdown = TIMING_EVERY  # closure cells: cheaper than attributes per frame
    consumed = 0

    def on_frame(transport: WSTransport, frame: WSFrame) -> None:
        nonlocal countdown, consumed
        msg_type = frame.msg_type
        if msg_type is _BINARY:
            try:
                messages = decode_sbe(frame.get_payload_as_memoryview())
            except DecodeError as error:
                # The frame header is read only now: a first fragment (or reserved bits) goes
                # back to the connection, which assembles the message and hands it back whole.
                if not frame.fin or frame.rsv1 or frame.rsv2 or frame.rsv3:
                    handle_frame(transport, frame)
                    return
                consumed += 1
                on_decode_error(error)
                return
            consumed += 1
            if not messages:
                return  # a trades message with an empty group
        elif msg_type is _TEXT and frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3):
            consumed += 1
            try:
                message = decode_json(frame.get_payload_as_memoryview())
            except DecodeError as error:
                on_decode_error(error)
                return
            if type(message) is ControlReply:
                on_reply(message)
                return
            messages = [message]  # serverShutdown, once in a connection's life
        else:
            handle_frame(transport, frame)
            return
        # One frame, one symbol, one template: one stream for all its messages.
        route = get_route(messages[0].stream)
        if route is None:
            for message in messages:
                on_unrouted(message)
            return
        check = route.check
        for message in messages:
            event = message.event
            if check is not None and not check(event):
                continue
            route.events += 1  # the stream's health counts delivered events
            countdown -= 1
            if countdown:
                single = route.single  # read per event: a timed run may switch it (backlog)
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
