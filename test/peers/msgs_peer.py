"""The far side of the cross-process interface test: a separate process that

- subscribes to ``in/<Type>`` for every pi07_msgs message type and republishes what it received, as a typed
  message (deserialised and serialised again), on ``out/<Type>``;
- serves the pi07_msgs services with answers derived from the request;
- runs an ``execute_task`` action server that sends one feedback per plan step and a result built from the goal.
"""
import sys
import time

import rclpy
from rclpy.action import ActionServer
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

import pi07_msgs.msg as pi07_msg
from pi07_msgs.action import ExecuteTask
from pi07_msgs.srv import Interject, ResetEpisode, ResetMemory


def message_types():
    return {name: cls for name, cls in vars(pi07_msg).items()
            if isinstance(cls, type) and hasattr(cls, 'get_fields_and_field_types') and not name.startswith('_')}


class InterfacePeer(Node):
    def __init__(self):
        super().__init__('interface_peer')
        self._echo_publishers = {}
        for name, cls in message_types().items():
            pub = self.create_publisher(cls, f'out/{name}', 10)
            self._echo_publishers[name] = pub
            self.create_subscription(cls, f'in/{name}', lambda msg, pub=pub: pub.publish(msg), 10)
        self.create_service(Interject, 'interject', self.on_interject)
        self.create_service(ResetMemory, 'reset_memory', self.on_reset_memory)
        self.create_service(ResetEpisode, 'reset_episode', self.on_reset_episode)
        self._action = ActionServer(self, ExecuteTask, 'execute_task', self.on_execute)

    def on_interject(self, request, response):
        response.accepted = bool(request.text)
        response.message = f'heard: {request.text}'
        response.subtask = request.text if request.as_subtask else 'decided by the policy'
        return response

    def on_reset_memory(self, request, response):
        response.success = request.visual or request.language
        response.message = f'reset {request.task_id or "all"} visual={request.visual} language={request.language}'
        return response

    def on_reset_episode(self, request, response):
        response.success = True
        response.message = f'seed {request.seed}'
        response.task.task_id = f'{request.task_family}-{request.seed}'
        response.task.instruction = f'do {request.task_family}'
        response.task.plan = [f'step {i}' for i in range(request.seed % 5)]
        response.task.metadata.quality = 5
        return response

    def on_execute(self, goal_handle):
        task = goal_handle.request.task
        # The client's feedback reader is matched by discovery, not by goal acceptance: wait for it.
        wait_end = time.monotonic() + 10.0
        while self.count_subscribers('/execute_task/_action/feedback') == 0 and time.monotonic() < wait_end:
            time.sleep(0.05)
        time.sleep(0.2)
        for index, step in enumerate(task.plan):
            feedback = ExecuteTask.Feedback(subtask=step, subtask_index=index,
                                            progress=(index + 1) / len(task.plan),
                                            memory_summary=' '.join(task.plan[:index]))
            goal_handle.publish_feedback(feedback)
            time.sleep(0.05)
        goal_handle.succeed()
        return ExecuteTask.Result(success=True, summary=task.instruction, subtasks_done=len(task.plan),
                                  progress=1.0, duration_s=goal_handle.request.timeout_s, message='done')


def main():
    rclpy.init()
    node = InterfacePeer()
    print('peer ready', flush=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
