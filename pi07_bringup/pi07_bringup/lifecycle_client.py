"""Drive lifecycle nodes through their standard services (what launch_ros does on a full ROS 2 install)."""
from __future__ import annotations

import time

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState

TRANSITIONS = {
    'configure': Transition.TRANSITION_CONFIGURE,
    'activate': Transition.TRANSITION_ACTIVATE,
    'deactivate': Transition.TRANSITION_DEACTIVATE,
    'cleanup': Transition.TRANSITION_CLEANUP,
    'shutdown': Transition.TRANSITION_ACTIVE_SHUTDOWN,
}
STATE_NAMES = {State.PRIMARY_STATE_UNCONFIGURED: 'unconfigured', State.PRIMARY_STATE_INACTIVE: 'inactive',
               State.PRIMARY_STATE_ACTIVE: 'active', State.PRIMARY_STATE_FINALIZED: 'finalized'}


class LifecycleError(RuntimeError):
    pass


class LifecycleClient:
    """Lifecycle services of one node, called from ``node`` (spun here, so use it from one thread)."""

    def __init__(self, node, target: str):
        self._node = node
        self.target = target.rstrip('/')
        self._change = node.create_client(ChangeState, f'{self.target}/change_state')
        self._get = node.create_client(GetState, f'{self.target}/get_state')

    def wait(self, timeout: float) -> bool:
        return self._change.wait_for_service(timeout_sec=timeout) and self._get.wait_for_service(timeout_sec=1.0)

    def _call(self, client, request, timeout: float, attempt_s: float = 5.0):
        """Call, resending every ``attempt_s``: a reply sent before the server has discovered this client's
        reply reader is lost (DDS discovery runs apart from the service's), and the call would wait forever."""
        import rclpy

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            future = client.call_async(request)
            attempt_end = min(deadline, time.monotonic() + attempt_s)
            while not future.done() and time.monotonic() < attempt_end:
                rclpy.spin_once(self._node, timeout_sec=0.05)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        raise LifecycleError(f'{self.target}: no answer from {client.srv_name} in {timeout:.0f} s')

    def state(self, timeout: float = 30.0) -> str:
        result = self._call(self._get, GetState.Request(), timeout)
        return STATE_NAMES.get(result.current_state.id, result.current_state.label)

    def _quiet_state(self) -> str | None:
        try:
            return self.state(timeout=3.0)
        except LifecycleError:
            return None  # busy in a transition callback

    def transition(self, name: str, timeout: float = 120.0) -> None:
        """Request a transition; raise LifecycleError if the node refuses or fails it."""
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[name]
        goal_state = {'configure': 'inactive', 'activate': 'active', 'deactivate': 'inactive',
                      'cleanup': 'unconfigured', 'shutdown': 'finalized'}[name]
        import rclpy

        future = self._change.call_async(request)
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + 10.0
        while not future.done() and time.monotonic() < deadline:
            rclpy.spin_once(self._node, timeout_sec=0.05)
            if not future.done() and time.monotonic() > next_check:
                # The reply may have been lost (see _call): ask where the node is.
                next_check = time.monotonic() + 10.0
                if self._quiet_state() == goal_state:
                    self._change.remove_pending_request(future)
                    return
        if not future.done():
            self._change.remove_pending_request(future)
            if self._quiet_state() == goal_state:
                return
            raise LifecycleError(f'{self.target}: no answer to transition {name} in {timeout:.0f} s')
        if not future.result().success:
            raise LifecycleError(f'{self.target}: transition {name} failed (see the node\'s log)')

    def bring_up(self, timeout: float = 120.0) -> None:
        """unconfigured → inactive → active."""
        if self.state() == 'unconfigured':
            self.transition('configure', timeout)
        if self.state() == 'inactive':
            self.transition('activate', timeout)

    def destroy(self) -> None:
        self._node.destroy_client(self._change)
        self._node.destroy_client(self._get)
