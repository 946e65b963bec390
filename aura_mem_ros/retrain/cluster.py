"""Connecting to a Ray cluster, for the commands that take ``--ray [auto|ADDRESS|local]``.

Ray is a training/development dependency: a robot install does not have it, and nothing
imports this module unless ``--ray`` is given.

    auto      $RAY_ADDRESS if set, else the cluster running on this machine (``ray start
              --head``), else a new single-machine cluster for this command only
    ADDRESS   a head node: ``host:6379`` (this machine joins as a driver) or ``ray://host:10001``
    local     a new single-machine cluster for this command only, even if another runs here

A process already connected (a test's cluster, a notebook) keeps its connection, and only a
cluster this module started is shut down afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # the robot install
        raise ValueError(
            "--ray needs the ray package (a development/training dependency: "
            "pip install -r requirements.txt, or pip install ray)"
        ) from exc
    return ray


def init_kwargs(address: str) -> dict[str, Any]:
    """ray.init arguments for an ``--ray`` value."""
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning"}
    if address == "auto":
        return common  # ray.init(): RAY_ADDRESS, else a running local cluster, else a new one
    if address == "local":
        return {**common, "address": "local"}
    return {**common, "address": address}


@contextmanager
def ray_session(address: str, **init_overrides: Any) -> Iterator[Any]:
    """The ``ray`` module, connected as ``address`` says, for the duration of the block."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(**{**init_kwargs(address), **init_overrides})
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def cluster_slots() -> tuple[int, int]:
    """(GPUs, CPUs) the connected cluster has in all, as whole numbers."""
    import ray

    res = ray.cluster_resources()
    return int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
