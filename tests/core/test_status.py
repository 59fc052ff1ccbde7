"""The overall-status rule, over every combination of shard states."""

from __future__ import annotations

import itertools

import pytest

from fastmd.core.status import ShardView, Status, overall_status

UP = ShardView(polling=False, was_up=True, up=True)
DOWN = ShardView(polling=False, was_up=True, up=False)
OPENING = ShardView(polling=False, was_up=False, up=False)
POLLING = ShardView(polling=True, was_up=True, up=False)
IDLE = ShardView(polling=False, was_up=True, up=True, streams=False)
IDLE_DOWN = ShardView(polling=False, was_up=True, up=False, streams=False)
IDLE_OPENING = ShardView(polling=False, was_up=False, up=False, streams=False)


@pytest.mark.parametrize(
    ("previous", "shards", "expected"),
    [
        (Status.CONNECTING, [], Status.CONNECTING),
        (Status.CONNECTING, [OPENING], Status.CONNECTING),
        (Status.CONNECTING, [UP], Status.CONNECTED),
        # Issue 12: a stream whose shard has no open socket is never CONNECTED (a new shard
        # opening, or its connection waiting minutes for the connect budget).
        (Status.CONNECTED, [UP, OPENING], Status.CONNECTING),
        (Status.CONNECTED, [OPENING], Status.CONNECTING),
        (Status.RECONNECTING, [DOWN, OPENING], Status.RECONNECTING),
        (Status.CONNECTED, [UP, IDLE], Status.CONNECTED),
        (Status.CONNECTED, [UP, IDLE_DOWN], Status.CONNECTED),  # nothing waits for it
        (Status.CONNECTED, [IDLE_OPENING], Status.CONNECTED),
        (Status.CONNECTING, [IDLE_OPENING], Status.CONNECTING),
        (Status.CONNECTED, [], Status.CONNECTED),  # no stream left
        (Status.CONNECTED, [UP, DOWN], Status.RECONNECTING),
        (Status.RECONNECTING, [UP], Status.CONNECTED),
        (Status.RECONNECTING, [DOWN, POLLING], Status.FALLBACK),
        (Status.FALLBACK, [UP], Status.CONNECTED),
        (Status.CLOSED, [UP], Status.CLOSED),
        (Status.CLOSED, [POLLING], Status.CLOSED),
    ],
)
def test_rules(previous: Status, shards: list[ShardView], expected: Status) -> None:
    assert overall_status(previous, shards) is expected


def test_every_combination_follows_the_priority() -> None:
    views = [ShardView(*flags) for flags in itertools.product((False, True), repeat=4)]
    for previous in Status:
        for size in range(3):
            for shards in itertools.product(views, repeat=size):
                status = overall_status(previous, shards)
                if previous is Status.CLOSED:
                    assert status is Status.CLOSED
                elif any(s.polling for s in shards):
                    assert status is Status.FALLBACK
                elif any(s.streams and s.was_up and not s.up for s in shards):
                    assert status is Status.RECONNECTING
                elif any(s.streams and not s.up for s in shards):
                    assert status is Status.CONNECTING
                elif previous is Status.CONNECTED or any(s.was_up for s in shards):
                    assert status is Status.CONNECTED
                else:
                    assert status is Status.CONNECTING
