"""Lifecycle node bases shared by the pi07 nodes (ros2/demos lifecycle_py style).

``ManagedNode``: subclasses create their resources in ``on_configure`` and free them in ``release()``, which
cleanup and shutdown both call (so a node shut down from any state leaves nothing behind).
``WorkerNode``: additionally runs ``work()`` in a thread while active — model inference takes tens to hundreds
of milliseconds and must not block the callbacks that keep the newest images and joint states.
"""
from __future__ import annotations

import threading

from rclpy.lifecycle import Node, State, TransitionCallbackReturn


class ManagedNode(Node):
    def release(self) -> None:
        """Destroy what on_configure created; called on cleanup and shutdown, must be safe to call twice."""

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS


class WorkerNode(ManagedNode):
    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self._running = False
        self._worker: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while active; work() returns soon after it turns false."""
        return self._running

    def work(self) -> None:
        """The loop run while active (check ``self.running``)."""
        raise NotImplementedError

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # lifecycle publishers first: work() may publish at once
        self._running = True
        self._worker = threading.Thread(target=self.work, name=f'{self.get_name()}_work', daemon=True)
        self._worker.start()
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.stop_work()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.stop_work()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.stop_work()
        return super().on_shutdown(state)

    def stop_work(self, timeout: float = 30.0) -> None:
        self._running = False
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=timeout)
