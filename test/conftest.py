"""Fixtures for real-rclpy tests: one DDS domain per run, a fresh Context per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rclpy
import torch
from domain_coordinator import domain_id as reserve_domain_id
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

# Batch-1 tensor ops are several times slower with two intra-op threads on a shared 2-core
# machine, and one thread makes float results independent of the thread count.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ros_domain_id() -> Iterator[int]:
    """A DDS domain id reserved for this whole test run (no cross-talk with parallel runs)."""
    with reserve_domain_id() as domain:
        yield domain


@pytest.fixture
def ros_context(
    request: pytest.FixtureRequest, ros_domain_id: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Context]:
    """A fresh, initialised rclpy Context, shut down after the test.

    Discovery is OFF (in-process only) unless the test is marked ``multiprocess``.
    """
    multiprocess = request.node.get_closest_marker("multiprocess") is not None
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST" if multiprocess else "OFF")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id))
    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@pytest.fixture
def executor(ros_context: Context) -> Iterator[SingleThreadedExecutor]:
    """A single-threaded executor on the test's context."""
    exe = SingleThreadedExecutor(context=ros_context)
    try:
        yield exe
    finally:
        exe.shutdown()


@pytest.fixture
def make_node(ros_context: Context, executor: SingleThreadedExecutor) -> Iterator:
    """Factory: ``make_node("name")`` creates a plain Node, adds it to the executor, and
    destroys it after the test."""
    nodes: list[Node] = []

    def factory(name: str, **kwargs: object) -> Node:
        node = Node(name, context=ros_context, **kwargs)  # type: ignore[arg-type]
        executor.add_node(node)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        executor.remove_node(node)
        node.destroy_node()
