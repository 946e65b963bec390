"""Entry point: ``python -m aura_mem_ros.node --ros-args ...`` and the ``aura_mem_node`` script.

With ``autostart`` (default) the node configures and activates itself; otherwise a lifecycle
manager drives it.

SIGINT / SIGTERM, at any moment:
  * during start-up (imports, rclpy init, model loading in configure): whatever is loading is
    abandoned, the node is destroyed and the process exits 0 without a traceback;
  * while spinning: the spin loop wakes at least every ``SPIN_SLICE_S`` and runs the shutdown
    transition, which publishes the safe action at once (an inference in flight is not
    waited for, its result is discarded), flushes memory and reports ``finalized``.
rclpy's own handlers are off: they would shut the context down before the safe action could
go out.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

# How often the spin loop looks at the stop flag: the bound on signal -> safe action (plus
# the callback running at that moment, all of them short).
SPIN_SLICE_S = 0.02


class StopRequested(BaseException):
    """SIGINT/SIGTERM during start-up (a BaseException: no ``except Exception`` swallows it)."""


class StopSignals:
    """Our SIGINT/SIGTERM handler. Installed first thing, so no moment of start-up is left to
    Python's default (a KeyboardInterrupt traceback) or to rclpy's (context shut down)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.raise_now = True  # start-up: abandon what is loading; serving: only set the flag

    def install(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested.set()
        if self.raise_now:
            raise StopRequested(signal.Signals(signum).name)


def _spin_until_stop(node: Any, executor: Any, stop: threading.Event) -> None:
    """Spin in short slices until a stop is requested, surviving a bug in any one callback.

    The exception is logged with its traceback and counted on /diagnostics (inputs status,
    reason ``callback_error``), and serving goes on: a robot-facing node must not exit (and
    stop publishing diagnostics) because one message hit an unexpected path.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    while rclpy.ok() and not stop.is_set():
        try:
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
        except ExternalShutdownException:
            raise
        except Exception as exc:
            node.get_logger().error(
                f"callback raised {type(exc).__name__}: {exc}; still serving\n"
                + traceback.format_exc()
            )
            node.stats.record_rejected("callback_error", f"{type(exc).__name__}: {exc}")


def main(args: list[str] | None = None) -> int:
    signals = StopSignals().install()
    node: Any = None
    executor: Any = None
    in_transition = False
    argv = sys.argv if args is None else args
    try:
        from aura_mem_ros.ros.node_help import exit_if_help
        from aura_mem_ros.ros.parameters import SPECS

        exit_if_help(
            argv,
            "aura_mem_node",
            "The aura_mem lifecycle node: camera + instruction in, memory-corrected actions out "
            "(see the README, 'The aura_mem node').",
            ((s.name, s.default, s.description) for s in SPECS),
        )
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        from aura_mem_ros.ros.aura_node import AuraMemNode  # after init: imports message types

        node = AuraMemNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.params.autostart:
            in_transition = True
            active = node.autostart()
            in_transition = False
            if not active:
                node.get_logger().error(
                    "autostart did not reach 'active'; staying up for "
                    "diagnostics and a lifecycle manager"
                )
        signals.raise_now = False
        _spin_until_stop(node, executor, signals.requested)
    except StopRequested as stop:
        if node is not None:
            node.get_logger().info(f"{stop} during start-up: exiting")
        else:
            print(f"aura_mem_node: {stop} during start-up (no node yet): exiting", file=sys.stderr)
    except Exception as exc:
        if type(exc).__name__ != "ExternalShutdownException":  # rclpy shut down under us
            raise
    finally:
        signals.raise_now = False  # a second signal during the clean-up only sets the flag
        if node is not None:
            _finish(node, executor, in_transition)
        if "rclpy" in sys.modules:
            sys.modules["rclpy"].try_shutdown()
    return 0


def _finish(node: Any, executor: Any, in_transition: bool) -> None:
    """Shutdown transition (safe action if serving, flush, finalized), then destroy.

    A start-up transition cut short by a signal leaves the state machine mid-transition,
    where no transition can start: then only the safe action (if anything serves) and the
    flush, which ``safe_stop`` and ``destroy_node`` do directly.
    """
    if in_transition:
        node.safe_stop()
    else:
        try:
            node.trigger_shutdown()
        except Exception as exc:  # already finalized, or the transition is not allowed
            node.get_logger().debug(f"shutdown transition skipped: {exc}")
    if executor is not None:
        executor.remove_node(node)
    node.destroy_node()


if __name__ == "__main__":
    sys.exit(main())
