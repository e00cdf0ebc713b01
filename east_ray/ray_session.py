"""Joining Ray: a given cluster address, else `$RAY_ADDRESS`, else a local Ray on 127.0.0.1.

A local Ray binds its head, object manager and workers to the loopback address, with no
dashboard, so nothing east_ray starts on a laptop listens beyond the machine.
"""

from __future__ import annotations

import os

import ray


def init_ray(address: str | None = None) -> None:
    """Connect to `address` (or $RAY_ADDRESS); otherwise start local Ray on 127.0.0.1."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
