"""Joining Ray: a given cluster address, else `$RAY_ADDRESS`, else a local Ray on loopback.

A local Ray listens on 127.0.0.1 only (no dashboard; token authentication stays on).
Asking Ray 2.60 for node address 127.0.0.1 is not enough: `ray.init` replaces a loopback
node address with the machine's own address whenever multi-node clusters are enabled,
which they are by default on Linux, and its servers then listen on every interface. Ray's
switch for single-machine use (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the default on
macOS and Windows) keeps the node address on loopback; with it the GCS, the raylet, the
workers and the runtime-env agent bind 127.0.0.1. tests/test_ray_session.py lists every
listening socket of the processes a local start creates and fails on any other address.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ray
from ray._private import ray_constants


def use_loopback() -> None:
    """Make every Ray node this process starts from now on listen on loopback only."""
    # Ray's processes inherit the variable; the driver read it at import, so set both.
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(
    address: str | None = None, env: Mapping[str, str] | None = None, **local: Any
) -> None:
    """Connect to `address` (or $RAY_ADDRESS); otherwise start local Ray on loopback.

    `env`: environment variables for every worker of this job, on every node.
    `local` goes to `ray.init` for a local start only (e.g. `num_cpus`, fake `num_gpus`).
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": dict(env)} if env else None
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        return
    use_loopback()
    ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env, **local)
