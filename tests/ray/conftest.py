"""A real two-node Ray cluster on this machine, as Ray's own test utilities start one: a
head and a second node, each with its own CPU, started once for these tests and stopped
after them with no Ray process left behind.

`make test` runs these tests in a network namespace of their own (`tests/ray/isolated`),
where loopback is the only interface, so Ray's traffic stays on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psutil
import pytest


def ray_processes() -> list[psutil.Process]:
    """Ray's processes started from this test process (its raylets, GCS, workers)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="package")
def cluster(real_ray: None) -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 1, "resources": {"head": 1}, "include_dashboard": False}
    two = Cluster(initialize_head=True, head_node_args=head)
    two.add_node(num_cpus=1, resources={"second": 1})
    ray.init(address=two.address, log_to_driver=False, logging_level="ERROR")
    try:
        yield two
    finally:
        ray.shutdown()
        two.shutdown()
        left = ray_processes()
        for process in left:
            process.kill()
        assert not left, f"Ray processes left behind: {[p.name() for p in left]}"
