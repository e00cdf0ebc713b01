"""Batches gathered ahead by a background thread, in their order.

On a GPU a trial's host has two jobs per step: gather the next batch (rows copied out of
the object store into page-locked memory) and launch the step's kernels. Done one after the
other, the host can be slower than the device and leave it idle; the gather's copies
release the GIL, so a thread that gathers the next `depth` batches runs beside the launches.
The batches and their order are the iterator's own, so a run's numbers do not change.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()  # the producer's end mark


class _Failed:
    """The exception the producer's iterator raised, to raise again in the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items` in order, up to `depth` of them made ahead in a thread; `depth` 0 is
    `items` itself. An exception in `items` is raised here at its place in the order;
    stopping early (a `break`, `close()`) stops the thread after the item it is making."""
    if depth < 0:
        raise ValueError(f"depth: got {depth}, expected 0 or more")
    if depth == 0:
        return items
    return _consume(items, depth)


def _consume(items: Iterator[T], depth: int) -> Iterator[T]:
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Hand `item` over unless the consumer has stopped; whether it was handed over."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))

    thread = threading.Thread(target=produce, name="east_ray-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
