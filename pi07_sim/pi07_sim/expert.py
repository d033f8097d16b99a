"""Scripted experts: privileged pick-and-place state machines that name the subtask they are working on.

    expert = make_expert(env, variant='expert', seed=0)
    action, subtask_text = expert.act(obs)     # subtask_text == '' once the task is done

The expert plans in tool space (a setpoint moved at a bounded speed towards waypoints) and converts to the
embodiment's action space (inverse kinematics for the arm). It reads object poses from the environment, checks
the outcome of every grasp and placement, and retries what failed, which is also how the "mistake" variant
recovers from its deliberately missed first grasp. Variants are labelled with pi0.7-style metadata.

The `recover` variant pushes its own setpoint off course now and then (a step of a few cm, smaller near the
objects, never while the gripper closes or opens) and then corrects it as usual; each push is a bad command in
the recording.

The `dart` variant (DART, Laskey et al. 2017) keeps its commands clean and disturbs their *execution* instead:
the robot is sent `expert.executed_action(action)`, the command plus a smooth random offset of a few cm, while the
recording keeps `action`. The robot is then off the expert's path, and the recorded command (relative to the
measured state, as the policy learns it) leads back to it: labels that correct, in the states a policy that is
a few cm off visits. The offset fades out as the tool nears a grasp or release, and is zero while the gripper
closes or opens, so the grasps themselves are the expert's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kinematics import wrap_angle
from .scene import BLOCK_HALF, BOWL_RADIUS, TRAY_FLOOR
from .tasks import MIDDLE_XY, Subtask, subtask_satisfied

HOVER_Z = 0.14  # m, tcp height for moving around above the objects
GRASP_HEIGHT = 0.005  # m, tcp above the block's centre when grasping (the pads' tips then clear the table)
RELEASE_CLEARANCE = 0.012  # m, gap between the block and the surface it is released onto
BOWL_SPOTS = ((0.0, -0.034),)  # the first block goes off-centre, so the second has room beside it
BOWL_SPOT_RADIUS = 0.036  # m from the bowl's centre


@dataclass(frozen=True)
class ExpertVariant:
    name: str
    speed_scale: float  # multiplies the nominal tool speed
    noise_m: float  # std of the setpoint noise while moving around (m); a quarter of it near objects
    mistake: bool  # miss the first grasp on purpose, then recover
    speed: int  # EpisodeMetadata speed bin 1..5
    quality: int  # EpisodeMetadata quality 1..5
    perturb_m: float = 0.0  # size of the occasional setpoint push the expert then corrects (m); 0 = never
    disturb_m: float = 0.0  # std of the smooth offset added to the executed command, not the recorded one (m)


VARIANTS = {
    'expert': ExpertVariant('expert', 1.0, 0.0, False, speed=4, quality=5),
    'fast': ExpertVariant('fast', 1.4, 0.0, False, speed=5, quality=5),
    'slow': ExpertVariant('slow', 0.5, 0.0, False, speed=2, quality=5),
    'noisy': ExpertVariant('noisy', 1.0, 0.012, False, speed=3, quality=2),
    'mistake': ExpertVariant('mistake', 1.0, 0.0, True, speed=3, quality=3),
    'recover': ExpertVariant('recover', 1.0, 0.0, False, speed=4, quality=4, perturb_m=0.04),
    # the recorded commands are the clean expert's: its metadata is the expert's
    'dart': ExpertVariant('dart', 1.0, 0.0, False, speed=4, quality=5, disturb_m=0.03),
    'dart_wide': ExpertVariant('dart_wide', 1.0, 0.0, False, speed=4, quality=5, disturb_m=0.05),
}
PERTURB_INTERVAL_S = (1.0, 2.5)  # time between two pushes of the recover variant
DISTURB_CORRELATION_S = 0.6  # time constant of the dart variant's offset (an Ornstein-Uhlenbeck process)
DISTURB_Z_SCALE = 0.3  # its vertical part, relative to the horizontal one
DISTURB_FADE_M = 0.04  # it fades out over the setpoint's last cm before a precise waypoint (grasp, release)


def variant_metadata(variant: str | ExpertVariant) -> dict:
    """EpisodeMetadata-like fields of a variant: speed 1..5, quality 1..5, mistake."""
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    return {'speed': v.speed, 'quality': v.quality, 'mistake': v.mistake, 'variant': v.name}


@dataclass
class Waypoint:
    position: np.ndarray
    yaw: float
    gripper: float
    hold_s: float = 0.0  # stay this long once reached (gripper closing or opening)
    precise: bool = False  # near an object: small noise, tight arrival tolerance


class ScriptedExpert:
    NOMINAL_SPEED = 0.32  # m/s of the setpoint
    YAW_SPEED = 2.5  # rad/s
    ARRIVAL_TOLERANCE = 0.012  # m between the measured tcp and a precise waypoint
    WAYPOINT_TIMEOUT_S = 3.0  # move on even if the robot lags (it is checked at the end of each subtask)

    def __init__(self, env, variant: str = 'expert', seed: int = 0):
        if variant not in VARIANTS:
            raise ValueError(f'unknown expert variant {variant!r}: expected one of {", ".join(VARIANTS)}')
        self.env = env
        self.variant = VARIANTS[variant]
        self.metadata = variant_metadata(self.variant)
        self.rng = np.random.default_rng(seed)
        self.dt = env.control_period
        self.reset()

    def reset(self) -> None:
        """Start over on the environment's current task (call after ``env.reset``)."""
        self.spec = self.env.task
        self.index = 0  # subtask being worked on
        self.waypoints: list[Waypoint] = []
        self.waypoint_time = 0.0
        self.hold_time = 0.0
        self.grasp_attempts = 0
        self.mistake_pending = self.variant.mistake
        tcp, yaw = self.env.tcp_pose()
        self.setpoint = tcp.copy()
        self.setpoint_yaw = yaw
        self.gripper = 0.0
        self.noise = np.zeros(3)
        self.disturbance = np.zeros(3)  # dart: the OU process, and the part of it applied now
        self.execution_offset = np.zeros(3)
        self.next_push_s = self.rng.uniform(*PERTURB_INTERVAL_S)
        self.joint_command = self.env.home.copy() if self.env.embodiment == 'arm7' else None

    def take_over(self) -> None:
        """Start from wherever the episode is now (another controller drove until here), not from its start: the
        subtask from the task's progress (the place once the named block is held), the setpoint and gripper from
        the robot's, and a climb to the hover height first when the tool is low. DAgger-style data: expert labels
        in the states a learned policy leads to (pi07_policy.data.dagger)."""
        self.reset()
        done, total = self.env.progress()
        self.index = done
        sub = self.subtask
        if sub is not None and sub.kind == 'pick' and self._holding(sub.obj):
            self.index += 1
        self.gripper = float(self.env.current_target()[-1] > 0.5)
        if self.env.embodiment == 'arm7':
            self.joint_command = self.env.current_target()[:-1].copy()
        self._plan()
        tcp, yaw = self.env.tcp_pose()
        if self.waypoints and tcp[2] < HOVER_Z - 0.03:
            holding = self.subtask is not None and self._holding(self.subtask.obj)
            climb = Waypoint(np.array([tcp[0], tcp[1], HOVER_Z]), yaw, 1.0 if holding else 0.0)
            self.waypoints.insert(0, climb)

    @property
    def subtask(self) -> Subtask | None:
        return self.spec.subtasks[self.index] if self.index < len(self.spec.subtasks) else None

    # ------------------------------------------------------------------------------------------------ planning
    def _grasp_yaw(self, obj: str) -> float:
        """Block yaw folded into [-pi/4, pi/4): any face pair will do for a cube."""
        return wrap_angle(((self.env.block_yaw(obj) + np.pi / 4) % (np.pi / 2)) - np.pi / 4)

    def _plan_pick(self, obj: str) -> list[Waypoint]:
        pos = self.env.block_position(obj)
        yaw = self._grasp_yaw(obj)
        grasp = np.array([pos[0], pos[1], max(pos[2], BLOCK_HALF) + GRASP_HEIGHT])
        if self.mistake_pending:  # land beside the block, along the fingers' open side: the grasp closes on air
            self.mistake_pending = False
            side = np.array([np.cos(yaw), np.sin(yaw), 0.0]) * 0.055 * self.rng.choice([-1.0, 1.0])
            grasp = grasp + side
        above = np.array([grasp[0], grasp[1], HOVER_Z])
        return [Waypoint(above, yaw, 0.0), Waypoint(grasp, yaw, 0.0, precise=True),
                Waypoint(grasp, yaw, 1.0, hold_s=0.5, precise=True), Waypoint(above, yaw, 1.0)]

    def _place_target(self, sub: Subtask) -> tuple[np.ndarray, float]:
        env = self.env
        if sub.target == 'bowl':
            xy, yaw = self._free_bowl_spot(sub.obj)
            return np.array([*xy, TRAY_FLOOR + BLOCK_HALF + RELEASE_CLEARANCE]), yaw
        if sub.target == 'tray':
            xy = env.fixture_position('tray')[:2]
            return np.array([*xy, TRAY_FLOOR + BLOCK_HALF + RELEASE_CLEARANCE]), self.setpoint_yaw
        if sub.target == 'middle':
            return np.array([*MIDDLE_XY, BLOCK_HALF + RELEASE_CLEARANCE * 0.5]), self.setpoint_yaw
        x, y, yaw = self.spec.layout.blocks[sub.obj]
        # The held block sits at the grasp yaw: turn the tool so the block gets back its original yaw.
        held_offset = wrap_angle(env.block_yaw(sub.obj) - self.setpoint_yaw)
        return np.array([x, y, BLOCK_HALF + RELEASE_CLEARANCE * 0.5]), wrap_angle(yaw - held_offset)

    def _free_bowl_spot(self, obj: str) -> tuple[np.ndarray, float]:
        """Where in the bowl to release ``obj`` and with which tool yaw.

        The first block goes off-centre; a later one goes to the spot farthest from the blocks already there,
        with the fingers closing across (not towards) them so the pads do not land on a block.
        """
        centre = self.env.fixture_position('bowl')[:2]
        others = [self.env.block_position(c)[:2] for c in self.spec.layout.blocks if c != obj]
        others = [p for p in others if np.linalg.norm(p - centre) < BOWL_RADIUS]
        if not others:
            return centre + np.array(BOWL_SPOTS[0]), self.setpoint_yaw
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        candidates = centre + BOWL_SPOT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        clearance = [min(np.linalg.norm(c - p) for p in others) for c in candidates]
        spot = candidates[int(np.argmax(clearance))]
        nearest = min(others, key=lambda p: np.linalg.norm(spot - p))
        away = spot - nearest
        yaw = float(np.arctan2(away[1], away[0]))  # tool x along the separation: fingers close across it
        yaw = wrap_angle(yaw - np.pi * np.round((yaw - self.setpoint_yaw) / np.pi))  # the nearer of yaw, yaw + pi
        return spot, yaw

    def _plan_place(self, sub: Subtask) -> list[Waypoint]:
        release, yaw = self._place_target(sub)
        above = np.array([release[0], release[1], HOVER_Z])
        return [Waypoint(above, yaw, 1.0), Waypoint(release, yaw, 1.0, precise=True),
                Waypoint(release, yaw, 0.0, hold_s=0.35, precise=True), Waypoint(above, yaw, 0.0)]

    def _plan(self) -> None:
        sub = self.subtask
        if sub is None:
            self.waypoints = []
        elif sub.kind == 'pick':
            self.grasp_attempts += 1
            self.waypoints = self._plan_pick(sub.obj)
        else:
            self.waypoints = self._plan_place(sub)
        self.waypoint_time = 0.0
        self.hold_time = 0.0

    def _finish_subtask(self) -> None:
        """All waypoints of the subtask ran: move on if it worked, otherwise go back to what failed."""
        sub = self.subtask
        if subtask_satisfied(self.spec, sub, self.env) or (sub.kind == 'pick' and self._holding(sub.obj)):
            self.index += 1
        elif sub.kind == 'place' and not self._holding(sub.obj):
            self.index -= 1  # dropped on the way or fell off: pick it up again
        self._plan()

    def _holding(self, obj: str) -> bool:
        return bool(self.env.block_position(obj)[2] > BLOCK_HALF + 0.02 and self.env.block_grasped(obj))

    # ------------------------------------------------------------------------------------------------ acting
    def act(self, obs: dict | None = None) -> tuple[np.ndarray, str]:
        """Next action (the embodiment's action space) and the subtask it works on ('' when done)."""
        if self.subtask is not None and not self.waypoints:
            self._plan()
        if self.subtask is None:
            return self._action(), ''
        wp = self.waypoints[0]
        text = self.subtask.text
        self._move_setpoint(wp)
        self.waypoint_time += self.dt
        reached = np.linalg.norm(self.setpoint - wp.position) < 1e-6
        tcp, _ = self.env.tcp_pose()
        tolerance = self.ARRIVAL_TOLERANCE if wp.precise else 3 * self.ARRIVAL_TOLERANCE
        arrived = reached and np.linalg.norm(tcp - wp.position) < tolerance
        if arrived or self.waypoint_time > self.WAYPOINT_TIMEOUT_S / self.variant.speed_scale:
            self.hold_time += self.dt
            if self.hold_time >= wp.hold_s:
                self.waypoints.pop(0)
                self.waypoint_time = 0.0
                self.hold_time = 0.0
                if not self.waypoints:
                    self._finish_subtask()
        return self._action(), text

    def _move_setpoint(self, wp: Waypoint) -> None:
        step = self.NOMINAL_SPEED * self.variant.speed_scale * self.dt
        delta = wp.position - self.setpoint
        dist = np.linalg.norm(delta)
        self.setpoint = wp.position.copy() if dist <= step else self.setpoint + delta / dist * step
        yaw_step = self.YAW_SPEED * self.variant.speed_scale * self.dt
        self.setpoint_yaw += float(np.clip(wrap_angle(wp.yaw - self.setpoint_yaw), -yaw_step, yaw_step))
        self.gripper = wp.gripper
        if self.variant.perturb_m > 0:
            self._maybe_push(wp)
        if self.variant.noise_m > 0:  # smooth (Ornstein-Uhlenbeck) wobble, damped near the objects
            sigma = self.variant.noise_m * (0.25 if wp.precise else 1.0)
            self.noise = 0.7 * self.noise + np.sqrt(1 - 0.7 ** 2) * self.rng.normal(0.0, sigma, 3)
        if self.variant.disturb_m > 0:
            self._update_disturbance(wp)

    def _update_disturbance(self, wp: Waypoint) -> None:
        """dart: advance the offset of the executed command; none during a hold (the gripper closing or opening),
        fading over the last DISTURB_FADE_M of the way to a precise waypoint (the tool arrives where the expert
        meant it to)."""
        rho = float(np.exp(-self.dt / DISTURB_CORRELATION_S))
        sigma = self.variant.disturb_m * np.array([1.0, 1.0, DISTURB_Z_SCALE])
        self.disturbance = rho * self.disturbance + np.sqrt(1 - rho ** 2) * self.rng.normal(0.0, sigma)
        envelope = 1.0
        if wp.hold_s > 0:
            envelope = 0.0
        elif wp.precise:
            envelope = float(np.clip(np.linalg.norm(wp.position - self.setpoint) / DISTURB_FADE_M, 0.0, 1.0))
        self.execution_offset = envelope * self.disturbance

    def _maybe_push(self, wp: Waypoint) -> None:
        """recover variant: every few seconds move the setpoint off course (horizontally, and up or down when
        away from the objects); the waypoint logic then brings it back. Not during a grasp or release."""
        self.next_push_s -= self.dt
        if self.next_push_s > 0 or wp.hold_s > 0:
            return
        self.next_push_s = self.rng.uniform(*PERTURB_INTERVAL_S)
        size = self.variant.perturb_m * (0.4 if wp.precise else 1.0)
        angle = self.rng.uniform(0, 2 * np.pi)
        push = np.array([np.cos(angle), np.sin(angle), 0.0 if wp.precise else self.rng.uniform(-0.5, 0.5)]) * size
        self.setpoint = self.setpoint + push
        self.setpoint[2] = max(self.setpoint[2], BLOCK_HALF + GRASP_HEIGHT)

    def executed_action(self, action: np.ndarray) -> np.ndarray:
        """What to send the robot for `action` (what `act` returned, the command to record): the same, except in
        the dart variant, whose current offset moves the tool target (through the inverse kinematics on the arm)."""
        if not self.execution_offset.any():
            return action
        return self._command(self.execution_offset)[0]

    def _command(self, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The action for the setpoint (+ noise) moved by `offset`, and the arm's joint solution (None: gantry)."""
        target = self.setpoint + self.noise + offset
        target[2] = max(target[2], BLOCK_HALF)
        spec = self.env.action_spec
        if self.env.embodiment == 'arm7':
            joints = self.env.ik.solve(target, self.setpoint_yaw, self.joint_command)
            return np.clip(np.concatenate([joints, [self.gripper]]), spec.low, spec.high), joints
        return np.clip(np.array([*target, self.setpoint_yaw, self.gripper]), spec.low, spec.high), None

    def _action(self) -> np.ndarray:
        action, joints = self._command(np.zeros(3))
        if joints is not None:   # the next solve starts from this one
            self.joint_command = joints
        return action


def make_expert(env, variant: str = 'expert', seed: int = 0) -> ScriptedExpert:
    """The scripted expert for ``env``'s current task (reset the env first)."""
    return ScriptedExpert(env, variant, seed)


def run_episode(env, variant: str = 'expert', seed: int = 0, render: bool = False) -> dict:
    """Reset ``env`` with ``seed`` and let the expert run it to success or the time limit."""
    env.reset(seed=seed)
    expert = make_expert(env, variant, seed)
    steps = 0
    while not env.done():
        action, _ = expert.act()
        env.set_target(expert.executed_action(action))
        env.advance(env.control_period)
        if render:
            env.observe()
        steps += 1
        if expert.subtask is None and env.success():
            break
    done, total = env.progress()
    return {'success': env.success(), 'progress': done, 'total': total, 'steps': steps, 'time': env.time,
            'family': env.task.family, 'seed': seed, 'variant': variant}
