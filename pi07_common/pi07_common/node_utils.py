"""Small helpers every pi07 node uses: declared parameters with descriptions, stamps, and main()."""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from rcl_interfaces.msg import ParameterDescriptor


def declare(node, name: str, default, description: str, read_only: bool = False):
    """Declare a parameter with its description and return its value."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    return node.declare_parameter(name, default, descriptor).value


def param(node, name: str):
    return node.get_parameter(name).value


TORCH_THREADS_HELP = ('CPU threads of torch in this process (0: torch\'s default, one per core). One per model node '
                      'stops model nodes that share a CPU from slowing each other down by oversubscribing its cores.')


def set_torch_threads(count: int) -> None:
    """torch.set_num_threads(count) for count > 0; 0 leaves torch's default. Process-wide, so a model node calls
    it before loading its model (one node per process, as the launch files run them)."""
    if count > 0:
        import torch

        torch.set_num_threads(int(count))


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(seconds: float):
    from builtin_interfaces.msg import Time

    sec = int(seconds // 1)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def run_node(make_node: Callable, args: list[str] | None = None) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM, then clean up (lifecycle nodes are shut down).

    One SingleThreadedExecutor: rclpy's MultiThreadedExecutor without ros2/rclpy#1547 (merged November 2025; the
    Kilted rclpy 9.1.2 wheels lack it) re-queues callbacks its pool has not started yet and busy-waits holding the
    GIL, delaying timers and subscriptions by seconds. Inference runs in the nodes' worker threads; a callback
    that blocks for long runs on a `SpunNode`."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv)
    node = make_node()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # SIGTERM (as sent by launch or a process manager) ends the spin the same way as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        shutdown = getattr(node, 'shutdown_cleanly', None)
        if shutdown is not None:
            try:
                shutdown()
            except Exception as exc:  # shutting down: report, do not mask the exit
                print(f'{node.get_name()}: error while shutting down: {exc}', file=sys.stderr)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


class SpunNode:
    """A plain node beside `owner`, in its namespace, spun by its own executor in a daemon thread: for a callback
    that blocks for long (an action's execute callback lasts a whole task), which on the owner's executor would
    hold up every other callback. It takes no command-line arguments, so a `__node:=` rename of the owner's
    process does not give both nodes one name."""

    def __init__(self, owner, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name, namespace=owner.get_namespace(), context=owner.context,
                                      use_global_arguments=False, start_parameter_services=False)
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f'{name}_spin', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Stop spinning, waiting up to `timeout` for a running callback to return."""
        self._executor.shutdown(timeout_sec=timeout)
        self._thread.join(timeout=timeout)

    def destroy(self, timeout: float = 5.0) -> None:
        self.stop(timeout)
        self.node.destroy_node()
