"""The embedded runner: the pi07 stack from a profile on machines without launch / ros2 CLI.

It starts the same nodes as ``pi07.launch.py`` (one process per node; pi07_bringup.graph decides which, with
which parameters), walks the lifecycle nodes through configure → activate (the executor last), streams their
output with a prefix, and on SIGINT/SIGTERM deactivates the executor first (no more commands), then stops every
process. Usage::

    ros2 run pi07_bringup run --profile sim_arm7            # or: python -m pi07_bringup.runner ...
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from pi07_bringup.graph import NodeSpec, build_graph, params_file_text
from pi07_bringup.lifecycle_client import LifecycleClient, LifecycleError
from pi07_bringup.profile import load_profile


def executable_path(package: str, executable: str) -> str:
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(package)) / 'lib' / package / executable
    if not path.exists():
        raise FileNotFoundError(f'{package} has no executable {executable!r} at {path} (colcon build?)')
    return str(path)


class NodeProcess:
    def __init__(self, spec: NodeSpec, args: list[str], log_path: Path, env: dict, echo: bool):
        self.spec = spec
        self.log_path = log_path
        self._log = open(log_path, 'w', buffering=1)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._pump, args=(echo,), daemon=True)
        self._thread.start()

    def _pump(self, echo: bool) -> None:
        for line in self.proc.stdout:
            self._log.write(line)
            if echo:
                sys.stdout.write(f'[{self.spec.name}] {line}')
        self._log.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self._thread.join(timeout=2.0)
        self._log.close()


class EmbeddedRunner:
    def __init__(self, specs: list[NodeSpec], namespace: str = '', log_dir: str | None = None,
                 env: dict | None = None, echo: bool = True):
        self.specs = specs
        self.namespace = namespace.strip('/')
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix='pi07_run_'))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault('PYTHONUNBUFFERED', '1')
        self.echo = echo
        self.processes: dict[str, NodeProcess] = {}
        self._ros_node = None
        self._owns_rclpy = False
        self._clients: dict[str, LifecycleClient] = {}

    def _full_name(self, name: str) -> str:
        return f'/{self.namespace}/{name}' if self.namespace else f'/{name}'

    def start(self) -> None:
        for spec in self.specs:
            params = self.log_dir / f'{spec.name}.params.yaml'
            params.write_text(params_file_text(spec))
            args = [executable_path(spec.package, spec.executable)] + spec.ros_arguments(self.namespace, str(params))
            self.processes[spec.name] = NodeProcess(spec, args, self.log_dir / f'{spec.name}.log', self.env,
                                                    self.echo)

    def _node(self):
        if self._ros_node is None:
            import rclpy
            from rclpy.signals import SignalHandlerOptions

            if not rclpy.ok():
                # The runner handles SIGINT/SIGTERM itself: it must still talk to the nodes while stopping them.
                rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
                self._owns_rclpy = True
            self._ros_node = rclpy.create_node('pi07_runner', namespace=self.namespace or None)
        return self._ros_node

    def bring_up(self, timeout: float = 180.0) -> None:
        """configure every lifecycle node, then activate them in order (the executor last)."""
        lifecycle = [s for s in self.specs if s.lifecycle]
        for spec in lifecycle:
            client = LifecycleClient(self._node(), self._full_name(spec.name))
            self._clients[spec.name] = client
        deadline = time.monotonic() + timeout
        for spec in lifecycle:
            while not self._clients[spec.name].wait(timeout=1.0):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise LifecycleError(f'{spec.name}: lifecycle services did not appear in {timeout:.0f} s')
        for spec in lifecycle:  # a node may have started itself (an autostart parameter): follow its state
            self._check_alive()
            if self._clients[spec.name].state() == 'unconfigured':
                self._clients[spec.name].transition('configure', timeout=max(10.0, deadline - time.monotonic()))
        for spec in lifecycle:
            if self._clients[spec.name].state() == 'inactive':
                self._clients[spec.name].transition('activate', timeout=30.0)

    def transition(self, name: str, transition: str, timeout: float = 30.0) -> None:
        self._clients[name].transition(transition, timeout)

    def state(self, name: str, timeout: float = 30.0) -> str:
        """The lifecycle state of a node started here ('unconfigured', 'inactive', 'active', ...)."""
        return self._clients[name].state(timeout)

    def _check_alive(self) -> None:
        dead = self.dead()
        if dead:
            tails = {n: self.processes[n].log_path.read_text()[-1500:] for n in dead}
            raise LifecycleError('node process(es) exited: ' + '; '.join(f'{n}:\n{t}' for n, t in tails.items()))

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if not p.alive()]

    def shutdown(self, timeout: float = 10.0) -> None:
        # The executor first: a deactivated executor commands nothing, whatever the other nodes do meanwhile.
        if 'chunk_executor' in self._clients and self.processes['chunk_executor'].alive():
            try:
                if self._clients['chunk_executor'].state(timeout=3.0) == 'active':
                    self._clients['chunk_executor'].transition('deactivate', timeout=3.0)
            except Exception as exc:  # still stop everything below
                print(f'[runner] could not deactivate chunk_executor: {exc!r}', file=sys.stderr)
        for client in self._clients.values():
            client.destroy()
        self._clients.clear()
        for process in reversed(list(self.processes.values())):
            process.signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.signal(signal.SIGKILL)
                process.proc.wait(timeout=5)
            process.close()
        if self._ros_node is not None:
            import rclpy

            self._ros_node.destroy_node()
            self._ros_node = None
            if self._owns_rclpy:  # leave a context the caller created (tests, a host program) running
                rclpy.try_shutdown()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Run the pi07 stack from a profile without launch.')
    parser.add_argument('--profile', default='sim_arm7', help='profile name (pi07_bringup/config) or YAML path')
    parser.add_argument('--namespace', default='', help='namespace of every node (one per robot)')
    parser.add_argument('--nodes', default='', help='comma-separated nodes to start (default: the profile\'s)')
    parser.add_argument('--checkpoint', action='append', default=[], metavar='NODE=PATH',
                        help='checkpoint directory for a node (repeatable)')
    parser.add_argument('--checkpoint-dir', default=None, help='base directory for relative checkpoint paths')
    parser.add_argument('--use-sim-time', action='store_true', help='nodes follow /clock')
    parser.add_argument('--param', action='append', default=[], metavar='NODE.NAME=YAML',
                        help='override one parameter, e.g. action_expert.mode=sync (repeatable)')
    parser.add_argument('--log-dir', default=None, help='where each node\'s log and params file go')
    parser.add_argument('--quiet', action='store_true', help='do not echo node output')
    return parser.parse_args(argv)


def overrides_from_args(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        key, _, value = item.partition('=')
        node, _, name = key.partition('.')
        if not node or not name or not _:
            raise SystemExit(f'--param {item!r}: expected NODE.NAME=VALUE')
        out.setdefault(node, {})[name] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = load_profile(args.profile, args.checkpoint_dir)
    checkpoints = dict(item.split('=', 1) for item in args.checkpoint)
    specs = build_graph(profile, nodes=[n for n in args.nodes.split(',') if n] or None,
                        use_sim_time=args.use_sim_time, checkpoints=checkpoints,
                        parameter_overrides=overrides_from_args(args.param))
    runner = EmbeddedRunner(specs, args.namespace, args.log_dir, echo=not args.quiet)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f'[runner] profile {profile.name}: starting {", ".join(s.name for s in specs)} (logs in {runner.log_dir})')
    status = 0
    try:
        runner.start()
        runner.bring_up()
        print('[runner] all nodes active; Ctrl-C to stop')
        while not stop.wait(0.5):
            dead = runner.dead()
            if dead:
                print(f'[runner] node(s) exited: {", ".join(dead)}; stopping', file=sys.stderr)
                status = 1
                break
    except (LifecycleError, FileNotFoundError) as exc:
        print(f'[runner] {exc}', file=sys.stderr)
        status = 1
    finally:
        runner.shutdown()
        print('[runner] stopped')
    return status


if __name__ == '__main__':
    sys.exit(main())
