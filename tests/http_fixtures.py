"""A local HTTP server for download tests, a way to point a catalog row's release at it, and
a way to read east_ray's log lines in a test.

The server (127.0.0.1, port 0) serves in-memory files, honours `Range` requests, records
every request, and can be told to drop the connection part-way (once, or on every request),
to stall part-way (until the test ends), to ignore `Range`, or to fail with a status.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from east_ray.catalog import DATASETS
from east_ray.catalog.datasets import Release


@dataclass
class State:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent, first time
    keep_dropping: bool = False  # apply drop_after to every request, not just the first
    stall_after: dict[str, int] = field(default_factory=dict)  # path -> bytes, then silence
    released: threading.Event = field(default_factory=threading.Event)  # ends every stall
    ignore_range: bool = False
    fail_status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet

    def do_GET(self) -> None:
        state = self.server.state
        requested = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, requested))
            drops = state.drop_after
            drop = drops.get(self.path) if state.keep_dropping else drops.pop(self.path, None)
            stall = state.stall_after.pop(self.path, None)
        if state.fail_status is not None:
            self.send_error(state.fail_status)
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if requested is not None and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested)
            assert match, requested
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if stall is not None:  # send the first bytes, then nothing until the test ends
            self.wfile.write(body[start : start + stall])
            self.wfile.flush()
            state.released.wait(timeout=30)
            return
        payload = body[start:] if drop is None else body[start : start + drop]
        self.wfile.write(payload)  # HTTP/1.0: the connection closes after this


@contextmanager
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A running server with no proxy in the way; shut down on exit."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    httpd = Server(("127.0.0.1", 0), _Handler)
    httpd.state = State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.state.released.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(seed: int, n: int) -> bytes:
    """Incompressible, deterministic bytes (so archives are as long as their content)."""
    out = bytearray()
    block = seed.to_bytes(4, "little")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def patch_release(monkeypatch: pytest.MonkeyPatch, name: str, **changes: Any) -> Release:
    """Replace fields of dataset `name`'s release in its catalog row for this test (the
    real rows pin the published files); returns the patched release."""
    row = DATASETS[name]
    assert row.release is not None, f"{name} has no release"
    release = dataclasses.replace(row.release, **changes)
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(row, release=release))
    return release
