"""Batches gathered ahead in a thread: same items, same order, errors in place, clean stop."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from east_ray.train.prefetch import prefetched


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "east_ray-prefetch"]


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_items_arrive_in_their_order(depth: int) -> None:
    assert list(prefetched(iter(range(20)), depth)) == list(range(20))
    assert not _threads()


def test_depth_zero_is_the_iterator_itself() -> None:
    items = iter(range(3))
    assert prefetched(items, 0) is items


def test_a_negative_depth_names_the_argument() -> None:
    with pytest.raises(ValueError, match="depth: got -1, expected 0 or more"):
        prefetched(iter(()), -1)


def test_an_error_is_raised_at_its_place_in_the_order() -> None:
    def items() -> Iterator[int]:
        yield 0
        yield 1
        raise OSError("disk")

    got = []
    with pytest.raises(OSError, match="disk"):
        for item in prefetched(items(), 4):
            got.append(item)
    assert got == [0, 1]
    assert not _threads()


def test_the_thread_runs_at_most_depth_ahead_and_stops_with_the_consumer() -> None:
    made = []

    def items() -> Iterator[int]:
        for i in itertools.count():
            made.append(i)
            yield i

    batches = prefetched(items(), 2)
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    time.sleep(0.3)  # time for the thread to run as far ahead as it may
    # three consumed, two waiting in the queue, one made and waiting to be handed over
    assert len(made) <= 3 + 2 + 1
    batches.close()  # what a `break` out of a training epoch does, once it is dropped
    assert not _threads()
    assert len(made) <= 3 + 2 + 1
