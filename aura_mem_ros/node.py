"""Entry point: ``python -m aura_mem_ros.node --ros-args ...`` and the ``aura_mem_node`` script.

With ``autostart`` (default) the node configures and activates itself; otherwise a lifecycle
manager drives it. Ctrl-C / SIGTERM deactivates first, so the safe action goes out while the
middleware is still up, then shuts down.
"""

from __future__ import annotations

import signal
import sys
import traceback
from types import FrameType

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from aura_mem_ros.ros.node_help import exit_if_help


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _spin_through_errors(node: Node, executor: SingleThreadedExecutor) -> None:
    """Spin until shutdown, surviving a bug in any one callback.

    The exception is logged with its traceback and counted on /diagnostics (inputs status,
    reason ``callback_error``), and serving goes on: a robot-facing node must not exit (and
    stop publishing diagnostics) because one message hit an unexpected path.
    """
    while rclpy.ok():
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as exc:
            node.get_logger().error(
                f"callback raised {type(exc).__name__}: {exc}; still serving\n"
                + traceback.format_exc()
            )
            node.stats.record_rejected("callback_error", f"{type(exc).__name__}: {exc}")


def main(args: list[str] | None = None) -> int:
    argv = sys.argv if args is None else args
    from aura_mem_ros.ros.parameters import SPECS

    exit_if_help(
        argv,
        "aura_mem_node",
        "The aura_mem lifecycle node: camera + instruction in, memory-corrected actions out "
        "(see the README, 'The aura_mem node').",
        ((s.name, s.default, s.description) for s in SPECS),
    )
    # rclpy's own handler would shut the context down before we could publish the safe
    # action; we take SIGINT/SIGTERM ourselves and stop in order.
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from aura_mem_ros.ros.aura_node import AuraMemNode  # after init: imports message types

    node = AuraMemNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.params.autostart and not node.autostart():
            node.get_logger().error(
                "autostart did not reach 'active'; staying up for "
                "diagnostics and a lifecycle manager"
            )
        _spin_through_errors(node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            node.trigger_shutdown()
        except Exception as exc:  # already finalized, or the transition is not allowed
            node.get_logger().debug(f"shutdown transition skipped: {exc}")
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
