"""A local Ray started by east_ray listens on loopback only."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
import time

import psutil

# Starts local Ray the way every east_ray command does, runs a task (so a worker exists),
# says so and waits to be killed.
DRIVER = """
import sys, time
from east_ray.ray_session import init_ray
import ray
init_ray(num_cpus=1)
ray.get(ray.remote(lambda: ray.util.get_node_ip_address()).remote())
print("node", ray.nodes()[0]["NodeManagerAddress"], flush=True)
time.sleep(120)
"""


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _listening(root: psutil.Process) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP or bound UDP socket in the tree."""
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = proc.name()
            sockets = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for s in sockets:
            if s.status == psutil.CONN_LISTEN or (s.status == psutil.CONN_NONE and s.laddr):
                found.append((name, s.laddr.ip, s.laddr.port))
    return found


def test_local_ray_listens_on_loopback_only() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert driver.stdout is not None
        line = driver.stdout.readline()
        assert line.startswith("node "), f"local Ray did not start: {line!r}"
        assert _loopback(line.split()[1]), f"Ray reports node address {line.split()[1]}"
        time.sleep(1)  # agents started with the raylet open their ports asynchronously
        sockets = _listening(psutil.Process(driver.pid))
        names = {name for name, _, _ in sockets}
        # the check means something only if Ray's servers were found
        assert {"gcs_server", "raylet"} <= names, sockets
        exposed = [s for s in sockets if not _loopback(s[1])]
        assert exposed == [], f"listening beyond loopback: {exposed}"
    finally:
        tree = psutil.Process(driver.pid).children(recursive=True)  # before the driver dies
        driver.kill()
        driver.wait()
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(tree, timeout=10)
