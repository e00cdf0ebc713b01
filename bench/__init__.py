"""Benchmarks: ratios measured side by side in one run (not timed tests)."""


def local_ray(num_gpus: int = 0) -> None:
    """The benchmarks' Ray: 2 CPUs (this machine's), optional fake GPUs, loopback only."""
    import ray  # bench.gpu runs where Ray may not be installed

    ray.init(
        num_cpus=2,
        num_gpus=num_gpus,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
