"""ControlChannel (sans-I/O): batching, ids, acks, errors, timeouts and retries, reconciliation of
what is wanted with what is in flight, and the reset after a reconnect. Time is a plain float."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from fastmd.core.events import ControlError, ControlReply
from fastmd.core.subscriptions import ControlChannel, Outcome


def decode(frame: bytes) -> dict[str, Any]:
    request = json.loads(frame)
    assert set(request) == {"method", "params", "id"}
    return request  # type: ignore[no-any-return]


def ack(request_id: int) -> ControlReply:
    return ControlReply(id=request_id, result=None)


def refuse(request_id: int, code: int = 2, msg: str = "Invalid request") -> ControlReply:
    return ControlReply(id=request_id, error=ControlError(code, msg))


def names(n: int) -> list[str]:
    return [f"s{i:04d}usdt@trade" for i in range(n)]


# -- batching and ids ----------------------------------------------------------------------------


def test_one_request_per_max_params_streams_sorted_and_numbered() -> None:
    channel = ControlChannel(max_params=200)
    wanted = names(450)
    channel.want(reversed(wanted))
    requests = [decode(f) for f in channel.requests(0.0)]
    assert [r["method"] for r in requests] == ["SUBSCRIBE"] * 3
    assert [len(r["params"]) for r in requests] == [200, 200, 50]
    assert [s for r in requests for s in r["params"]] == sorted(wanted)
    assert [r["id"] for r in requests] == [1, 2, 3]
    assert all(type(r["id"]) is int for r in requests)  # futures takes unsigned integers only
    assert channel.in_flight == 3
    assert not channel.is_settled()


def test_nothing_is_requested_twice_while_in_flight() -> None:
    channel = ControlChannel()
    channel.want(["a@trade", "b@trade"])
    assert len(channel.requests(0.0)) == 1
    assert channel.requests(0.1) == []
    channel.want(["a@trade", "c@trade"])  # a is in flight already: only c is new
    (frame,) = channel.requests(0.2)
    assert decode(frame)["params"] == ["c@trade"]


def test_ids_never_repeat_across_methods_retries_and_resets() -> None:
    channel = ControlChannel(ack_timeout=1.0, max_retries=5)
    seen: list[int] = []
    channel.want(names(3))
    seen += [decode(f)["id"] for f in channel.requests(0.0)]
    frames, _ = channel.poll(2.0)
    seen += [decode(f)["id"] for f in frames]
    channel.reset()
    seen += [decode(f)["id"] for f in channel.requests(3.0)]
    channel.on_reply(ack(seen[-1]))
    channel.drop(names(1))
    seen += [decode(f)["id"] for f in channel.requests(4.0)]
    assert len(seen) == 4
    assert seen == sorted(set(seen))


# -- acknowledgements and errors ------------------------------------------------------------------


def test_a_stream_is_active_only_once_acknowledged() -> None:
    channel = ControlChannel()
    channel.want(["a@trade", "b@trade"])
    (frame,) = channel.requests(0.0)
    assert channel.active == set()
    request_id = decode(frame)["id"]
    assert channel.owns(ack(request_id))
    assert not channel.owns(ack(request_id + 1))
    assert not channel.owns(ControlReply(id="abc"))
    outcomes = channel.on_reply(ack(request_id))
    assert outcomes == [
        Outcome("a@trade", "SUBSCRIBE", True),
        Outcome("b@trade", "SUBSCRIBE", True),
    ]
    assert channel.active == {"a@trade", "b@trade"}
    assert channel.in_flight == 0
    assert channel.is_settled()
    assert channel.requests(1.0) == []


def test_replies_to_unknown_or_answered_ids_are_ignored() -> None:
    channel = ControlChannel()
    channel.want(["a@trade"])
    request_id = decode(channel.requests(0.0)[0])["id"]
    assert channel.on_reply(ack(request_id + 7)) == []
    assert channel.on_reply(ControlReply(id=None, error=ControlError(3, "Invalid JSON"))) == []
    assert channel.on_reply(ControlReply(id=str(request_id))) == []
    assert channel.in_flight == 1
    assert len(channel.on_reply(ack(request_id))) == 1
    assert channel.on_reply(ack(request_id)) == []  # a second reply to the same id


def test_an_error_reply_fails_every_stream_of_its_request() -> None:
    channel = ControlChannel(max_params=2)
    channel.want(["a@trade", "b@trade", "c@trade"])
    first, second = (decode(f) for f in channel.requests(0.0))
    error = ControlError(2, "Invalid request: too many streams")
    outcomes = channel.on_reply(refuse(first["id"], 2, error.msg))
    assert outcomes == [
        Outcome("a@trade", "SUBSCRIBE", False, error),
        Outcome("b@trade", "SUBSCRIBE", False, error),
    ]
    assert channel.failed == {"a@trade", "b@trade"}
    channel.on_reply(ack(second["id"]))
    assert channel.active == {"c@trade"}
    assert channel.is_settled()  # failed streams do not hold it up
    assert channel.requests(1.0) == []  # failed streams are not asked for again
    channel.want(["a@trade"])  # until they are wanted again
    (frame,) = channel.requests(2.0)
    assert decode(frame)["params"] == ["a@trade"]


def test_unsubscribe_is_batched_and_removes_on_ack() -> None:
    channel = ControlChannel(max_params=2)
    channel.want(["a@trade", "b@trade", "c@trade"])
    for frame in channel.requests(0.0):
        channel.on_reply(ack(decode(frame)["id"]))
    channel.drop(["c@trade", "a@trade", "b@trade"])
    requests = [decode(f) for f in channel.requests(1.0)]
    assert [(r["method"], r["params"]) for r in requests] == [
        ("UNSUBSCRIBE", ["a@trade", "b@trade"]),
        ("UNSUBSCRIBE", ["c@trade"]),
    ]
    assert channel.active == {"a@trade", "b@trade", "c@trade"}  # until acknowledged
    outcomes = channel.on_reply(ack(requests[1]["id"]))
    assert outcomes == [Outcome("c@trade", "UNSUBSCRIBE", True)]
    assert channel.active == {"a@trade", "b@trade"}
    channel.on_reply(ack(requests[0]["id"]))
    assert channel.active == set()
    assert channel.is_settled()


# -- reconciliation while requests are in flight --------------------------------------------------


def test_dropped_while_subscribing_is_unsubscribed_after_the_ack() -> None:
    channel = ControlChannel()
    channel.want(["a@trade"])
    sub_id = decode(channel.requests(0.0)[0])["id"]
    channel.drop(["a@trade"])
    assert channel.requests(0.1) == []  # nothing to undo until the server says it subscribed
    channel.on_reply(ack(sub_id))
    (frame,) = channel.requests(0.2)
    assert (decode(frame)["method"], decode(frame)["params"]) == ("UNSUBSCRIBE", ["a@trade"])
    channel.on_reply(ack(decode(frame)["id"]))
    assert channel.active == set()
    assert channel.is_settled()


def test_wanted_again_while_unsubscribing_is_subscribed_after_the_ack() -> None:
    channel = ControlChannel()
    channel.want(["a@trade"])
    channel.on_reply(ack(decode(channel.requests(0.0)[0])["id"]))
    channel.drop(["a@trade"])
    unsub = decode(channel.requests(0.1)[0])
    assert unsub["method"] == "UNSUBSCRIBE"
    channel.want(["a@trade"])
    assert channel.requests(0.2) == []  # still active: nothing to do until the UNSUBSCRIBE lands
    channel.on_reply(ack(unsub["id"]))
    assert channel.active == set()
    (frame,) = channel.requests(0.3)
    assert (decode(frame)["method"], decode(frame)["params"]) == ("SUBSCRIBE", ["a@trade"])
    channel.on_reply(ack(decode(frame)["id"]))
    assert channel.active == {"a@trade"}
    assert channel.is_settled()


def test_subscribe_and_unsubscribe_in_one_pass() -> None:
    channel = ControlChannel()
    channel.want(["a@trade"])
    channel.on_reply(ack(decode(channel.requests(0.0)[0])["id"]))
    channel.drop(["a@trade"])
    channel.want(["b@trade"])
    requests = [decode(f) for f in channel.requests(1.0)]
    assert [(r["method"], r["params"]) for r in requests] == [
        ("SUBSCRIBE", ["b@trade"]),
        ("UNSUBSCRIBE", ["a@trade"]),
    ]


# -- timeouts and retries -------------------------------------------------------------------------


def test_unanswered_requests_are_resent_then_fail() -> None:
    channel = ControlChannel(ack_timeout=5.0, max_retries=2)
    channel.want(["a@trade", "b@trade"])
    first = decode(channel.requests(100.0)[0])
    assert channel.next_deadline() == pytest.approx(105.0)
    assert channel.poll(104.9) == ([], [])
    ids = [first["id"]]
    for now in (105.0, 110.0):
        frames, outcomes = channel.poll(now)
        assert outcomes == []
        (resent,) = (decode(f) for f in frames)
        assert (resent["method"], resent["params"]) == ("SUBSCRIBE", first["params"])
        assert resent["id"] > ids[-1]
        ids.append(resent["id"])
        assert channel.next_deadline() == pytest.approx(now + 5.0)
    frames, outcomes = channel.poll(115.0)
    assert frames == []
    assert [(o.stream, o.method, o.ok) for o in outcomes] == [
        ("a@trade", "SUBSCRIBE", False),
        ("b@trade", "SUBSCRIBE", False),
    ]
    error = outcomes[0].error
    assert error is not None
    assert error.code == -1
    assert "3 tries" in error.msg
    assert channel.failed == {"a@trade", "b@trade"}
    assert channel.in_flight == 0
    assert channel.next_deadline() is None
    assert channel.requests(116.0) == []  # failed: not asked for again while still desired
    # A reply to an abandoned attempt changes nothing.
    assert channel.on_reply(ack(ids[0])) == []
    # The server may have applied it (only the replies lost): once the streams are dropped, as
    # the client drops failed streams, they are unsubscribed to be sure.
    channel.drop(["a@trade", "b@trade"])
    (frame,) = channel.requests(117.0)
    assert (decode(frame)["method"], decode(frame)["params"]) == (
        "UNSUBSCRIBE",
        ["a@trade", "b@trade"],
    )
    channel.on_reply(ack(decode(frame)["id"]))
    assert channel.active == set()
    assert channel.is_settled()


def test_a_resend_that_is_acknowledged_succeeds() -> None:
    channel = ControlChannel(ack_timeout=1.0, max_retries=1)
    channel.want(["a@trade"])
    first = decode(channel.requests(0.0)[0])
    (resent,) = (decode(f) for f in channel.poll(1.5)[0])
    assert channel.on_reply(ack(first["id"])) == []  # the first attempt was given up
    assert channel.on_reply(ack(resent["id"])) == [Outcome("a@trade", "SUBSCRIBE", True)]
    assert channel.active == {"a@trade"}
    assert channel.poll(10.0) == ([], [])


def test_unsubscribe_timeout_fails_without_marking_failed() -> None:
    channel = ControlChannel(ack_timeout=1.0, max_retries=0)
    channel.want(["a@trade"])
    channel.on_reply(ack(decode(channel.requests(0.0)[0])["id"]))
    channel.drop(["a@trade"])
    channel.requests(1.0)
    frames, outcomes = channel.poll(2.0)
    assert frames == []
    assert [(o.stream, o.method, o.ok) for o in outcomes] == [("a@trade", "UNSUBSCRIBE", False)]
    assert channel.failed == set()
    assert channel.active == {"a@trade"}  # still subscribed as far as we know


def test_retries_zero_fails_at_the_first_timeout() -> None:
    channel = ControlChannel(ack_timeout=0.5, max_retries=0)
    channel.want(["a@trade"])
    channel.requests(0.0)
    frames, outcomes = channel.poll(0.5)
    assert frames == []
    assert len(outcomes) == 1
    assert not outcomes[0].ok


# -- reset after a reconnect -----------------------------------------------------------------------


def test_reset_requests_exactly_the_desired_set_again_batched() -> None:
    channel = ControlChannel(max_params=3)
    channel.want(names(7))
    frames = channel.requests(0.0)
    for frame in frames[:2]:
        channel.on_reply(ack(decode(frame)["id"]))  # the third batch is still in flight
    channel.drop(names(7)[:1])
    channel.requests(0.5)  # UNSUBSCRIBE s0000 in flight
    channel.want(["zzz@trade"])
    last_id = max(decode(f)["id"] for f in [*frames, *channel.requests(0.6)])
    channel.reset()
    assert channel.active == set()
    assert channel.in_flight == 0
    requests = [decode(f) for f in channel.requests(1.0)]
    assert all(r["method"] == "SUBSCRIBE" for r in requests)
    assert [len(r["params"]) for r in requests] == [3, 3, 1]
    requested = [s for r in requests for s in r["params"]]
    assert sorted(requested) == sorted({*names(7)[1:], "zzz@trade"})
    assert min(r["id"] for r in requests) > last_id
    # Replies meant for the old socket are ignored.
    assert channel.on_reply(ack(last_id)) == []
    for request in requests:
        channel.on_reply(ack(request["id"]))
    assert channel.active == channel.desired
    assert channel.is_settled()


def test_reset_does_not_revive_failed_streams() -> None:
    channel = ControlChannel()
    channel.want(["a@trade"])
    channel.on_reply(refuse(decode(channel.requests(0.0)[0])["id"]))
    channel.want(["b@trade"])
    channel.reset()
    (frame,) = channel.requests(1.0)
    assert decode(frame)["params"] == ["b@trade"]


# -- property: a server that applies what it receives ends equal to the client -------------------


@dataclass
class FakeServer:
    """Applies every frame it gets; replies arrive later, in order, or never (the frame lost)."""

    subscribed: set[str] = field(default_factory=set)
    replies: list[ControlReply] = field(default_factory=list)
    refuse_next: bool = False

    def receive(self, frame: bytes, lost: bool) -> None:
        request = decode(frame)
        assert 0 < len(request["params"]) <= 4
        if lost:
            return
        if self.refuse_next:
            self.refuse_next = False
            self.replies.append(refuse(request["id"]))
            return
        if request["method"] == "SUBSCRIBE":
            self.subscribed.update(request["params"])
        else:
            self.subscribed.difference_update(request["params"])
        self.replies.append(ack(request["id"]))


STREAMS = [f"x{i}@trade" for i in range(8)]
Op = tuple[str, Any]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("want"), st.lists(st.sampled_from(STREAMS), max_size=5)),
        st.tuples(st.just("drop"), st.lists(st.sampled_from(STREAMS), max_size=5)),
        st.tuples(st.just("send"), st.booleans()),
        st.tuples(st.just("deliver"), st.integers(0, 3)),
        st.tuples(st.just("refuse"), st.none()),
        st.tuples(st.just("tick"), st.tuples(st.floats(0.0, 3.0), st.booleans())),
        st.tuples(st.just("reset"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_any_history_converges_to_the_desired_set(history: list[Op]) -> None:
    channel = ControlChannel(max_params=4, ack_timeout=1.0, max_retries=2)
    server = FakeServer()
    now = 0.0
    ids: list[int] = []

    def send(frames: list[bytes], lost: bool = False) -> None:
        for frame in frames:
            ids.append(decode(frame)["id"])
            server.receive(frame, lost)

    for op, arg in history:
        if op == "want":
            channel.want(arg)
        elif op == "drop":
            channel.drop(arg)
        elif op == "send":
            send(channel.requests(now), lost=arg)
        elif op == "deliver":
            for reply in server.replies[:arg]:
                channel.on_reply(reply)
            del server.replies[:arg]
        elif op == "refuse":
            server.refuse_next = True
        elif op == "tick":  # replies in transit land first: timeouts come from lost frames
            for reply in server.replies:
                channel.on_reply(reply)
            server.replies.clear()
            now += arg[0]
            send(channel.poll(now)[0], lost=arg[1])
        elif op == "reset":  # a new socket: the server forgot everything, old replies are void
            channel.reset()
            server = FakeServer()
    # Then the network heals: deliver everything until nothing moves.
    server.refuse_next = False

    def drain() -> None:
        nonlocal now
        for _ in range(50):
            for reply in server.replies:
                channel.on_reply(reply)
            server.replies.clear()
            now += 1.5  # past ack_timeout, whatever the float rounding
            frames = channel.requests(now) + channel.poll(now)[0]
            if not frames:
                return
            send(frames)
        pytest.fail("the channel never settles")

    drain()
    assert ids == sorted(set(ids))  # unique and increasing
    assert channel.in_flight == 0
    # Whatever is wanted and not failed is subscribed; nothing unwanted is left on the server.
    assert channel.desired - channel.failed <= server.subscribed <= channel.desired
    assert server.subscribed <= channel.active
    assert channel.active - server.subscribed <= channel.failed  # given up, maybe subscribed
    # The client drops failed streams: then the server ends exactly at the desired set.
    channel.drop(set(channel.failed))
    drain()
    assert ids == sorted(set(ids))
    assert channel.active == server.subscribed == channel.desired


def test_a_subscribe_given_up_is_not_left_subscribed_on_the_server() -> None:
    # The server applied the SUBSCRIBE; only its replies were too late.
    channel = ControlChannel(ack_timeout=1.0, max_retries=1)
    server = FakeServer()
    channel.want(["a@trade"])
    for frame in channel.requests(0.0):
        server.receive(frame, lost=False)
    frames, outcomes = channel.poll(1.0)
    for frame in frames:
        server.receive(frame, lost=False)
    frames, outcomes = channel.poll(2.0)
    assert [o.ok for o in outcomes] == [False]  # given up: the user is told it failed
    for reply in server.replies:  # the late replies arrive
        channel.on_reply(reply)
    server.replies.clear()
    channel.drop(["a@trade"])  # what the client does with a failed stream
    for frame in channel.requests(3.0):
        server.receive(frame, lost=False)
    for reply in server.replies:
        channel.on_reply(reply)
    assert server.subscribed == channel.active == set()


def test_a_subscribe_given_up_and_wanted_again_is_sent_again() -> None:
    # Found by the history property: every SUBSCRIBE frame was lost, the channel gave up and
    # counted the stream as possibly active; wanted again, it must not be taken as subscribed.
    channel = ControlChannel(ack_timeout=1.0, max_retries=2)
    server = FakeServer()
    channel.want(["x0@trade"])
    for frame in channel.requests(0.0):
        server.receive(frame, lost=True)
    for now in (1.0, 2.0, 3.0):
        for frame in channel.poll(now)[0]:
            server.receive(frame, lost=True)
    assert channel.failed == {"x0@trade"}
    channel.want(["x0@trade"])
    for frame in channel.requests(4.0):
        server.receive(frame, lost=False)
    for reply in server.replies:
        channel.on_reply(reply)
    assert server.subscribed == channel.active == {"x0@trade"}
    assert channel.is_settled()
