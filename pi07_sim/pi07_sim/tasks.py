"""Task families: seeded layouts, instructions in varied wording, plans of subtasks, progress and success.

A task is a sequence of subtasks (pick an object, place it somewhere). Progress counts the subtasks completed *in
order*: subtask k only counts once subtasks 0..k-1 have. Success = every subtask done and the final placements
still hold. Nothing here touches MuJoCo: predicates read a ``World`` (the environment implements it).

Families:
- ``ordered_place``: two of the three blocks go into the bowl in a given order (the third is a distractor).
- ``restore_layout`` (needs memory): a block is moved onto the tray and then back to where it started; once it
  has been moved, only a memory of the first frames tells where "where it started" is.
- ``middle_place`` (built for subgoal images): a block goes to an unmarked square in the middle of the table.
  Nothing in the scene marks the spot, so only what the words mean tells where it is. Its demonstrations are
  meant as videos for the world model (the VLA's recipe leaves the family out, `--include`), as π0.7's world
  model learns from video that has no actions: the VLA then knows the spot only from the world model's subgoal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .scene import BLOCK_COLORS, BLOCK_HALF, BOWL_RADIUS, TRAY_FLOOR, TRAY_HALF

FAMILIES = ('ordered_place', 'restore_layout', 'middle_place')
# Where objects and fixtures may be put (m, table frame): inside both robots' reach and the scene camera's view.
BLOCK_REGION = ((-0.18, 0.2), (-0.27, 0.27))
BOWL_REGION = ((-0.1, 0.15), (-0.25, -0.15))
TRAY_REGION = ((-0.1, 0.14), (0.15, 0.23))
LIFTED_Z = BLOCK_HALF + 0.03  # a block centre above this height has been picked up
RESTING_Z = BLOCK_HALF + 0.02  # ... below this it rests (on the table, the tray or the bowl's floor)
ORIGIN_TOLERANCE = 0.03  # m: "back where it started"
MIDDLE_XY = (0.02, 0.0)  # m: the middle of the table, between the bowl's and the tray's regions
MIDDLE_HALF = 0.05  # m: half side of the square that counts as "the middle"


class World(Protocol):
    def block_position(self, name: str) -> np.ndarray: ...
    def fixture_position(self, name: str) -> np.ndarray: ...
    def block_grasped(self, name: str) -> bool: ...


@dataclass(frozen=True)
class Subtask:
    kind: str  # 'pick' or 'place'
    obj: str  # block colour
    target: str  # place target: 'bowl', 'tray', 'origin', 'middle'; '' for picks
    text: str


@dataclass(frozen=True)
class Layout:
    bowl_xy: tuple[float, float]
    tray_xy: tuple[float, float]
    blocks: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # colour -> (x, y, yaw)


@dataclass(frozen=True)
class TaskSpec:
    family: str
    seed: int
    instruction: str
    subtasks: tuple[Subtask, ...]
    layout: Layout
    time_limit_s: float

    @property
    def plan(self) -> list[str]:
        return [s.text for s in self.subtasks]


def pick(obj: str) -> Subtask:
    return Subtask('pick', obj, '', f'pick up the {obj} block')


def place(obj: str, target: str) -> Subtask:
    text = {'bowl': f'place the {obj} block in the bowl', 'tray': f'place the {obj} block on the tray',
            'origin': f'put the {obj} block back where it was',
            'middle': f'place the {obj} block in the middle of the table'}[target]
    return Subtask('place', obj, target, text)


ORDERED_PLACE_WORDINGS = (
    'put the {a} block in the bowl, then the {b} one',
    'first place the {a} block into the bowl, and after that the {b} block',
    'put the {a} block and then the {b} block in the bowl',
    'pick up the {a} block and drop it in the bowl, then do the same with the {b} block',
    '{a} block into the bowl first, then the {b} block',
    'place the {a} and the {b} blocks in the bowl, {a} first',
    'move the {a} block to the bowl; once that is done, move the {b} block there too',
    'fill the bowl with the {a} block followed by the {b} block',
)
RESTORE_LAYOUT_WORDINGS = (
    'move the {a} block onto the tray, then put it back where it started',
    'put the {a} block on the tray and then return it to its original spot',
    'take the {a} block to the tray, then bring it back to where it was',
    'place the {a} block on the tray, then restore it to its starting position',
    'carry the {a} block over to the tray and afterwards put it back in its old place',
    'set the {a} block on the tray, then undo that and leave it where it first was',
)

MIDDLE_PLACE_WORDINGS = (
    'put the {a} block in the middle of the table',
    'move the {a} block to the centre of the table',
    'place the {a} block in the middle of the table',
    'take the {a} block and set it down in the middle of the table',
    'bring the {a} block to the centre of the table',
)


def _sample_layout(rng: np.random.Generator, keep_clear: tuple[float, float] | None = None) -> Layout:
    """Bowl, tray and blocks; with ``keep_clear`` no block within 0.11 m of that point (the families without it
    draw exactly as before: their seeds keep their layouts)."""
    bowl = rng.uniform([r[0] for r in BOWL_REGION], [r[1] for r in BOWL_REGION])
    tray = rng.uniform([r[0] for r in TRAY_REGION], [r[1] for r in TRAY_REGION])
    blocks: dict[str, tuple[float, float, float]] = {}
    low, high = [r[0] for r in BLOCK_REGION], [r[1] for r in BLOCK_REGION]
    for name in BLOCK_COLORS:
        for _ in range(1000):
            xy = rng.uniform(low, high)
            clear_of_bowl = np.linalg.norm(xy - bowl) > BOWL_RADIUS + 0.07
            clear_of_tray = (abs(xy[0] - tray[0]) > TRAY_HALF[0] + 0.06 or abs(xy[1] - tray[1]) > TRAY_HALF[1] + 0.06)
            clear_of_blocks = all(np.linalg.norm(xy - np.array(b[:2])) > 0.1 for b in blocks.values())
            clear_of_spot = keep_clear is None or np.linalg.norm(xy - np.array(keep_clear)) > 0.11
            if clear_of_bowl and clear_of_tray and clear_of_blocks and clear_of_spot:
                break
        else:  # pragma: no cover - the regions leave ample room
            raise RuntimeError('could not place the blocks')
        blocks[name] = (float(xy[0]), float(xy[1]), float(rng.uniform(-np.pi / 4, np.pi / 4)))
    return Layout((float(bowl[0]), float(bowl[1])), (float(tray[0]), float(tray[1])), blocks)


def make_task(family: str, seed: int) -> TaskSpec:
    """The task of ``family`` for ``seed``: the same seed always gives the same layout, order and wording."""
    if family not in FAMILIES:
        raise ValueError(f'unknown task family {family!r}: expected one of {", ".join(FAMILIES)}')
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    layout = _sample_layout(rng, keep_clear=MIDDLE_XY if family == 'middle_place' else None)
    colours = list(BLOCK_COLORS)
    if family == 'ordered_place':
        first, second = (colours[i] for i in rng.choice(len(colours), size=2, replace=False))
        wording = ORDERED_PLACE_WORDINGS[rng.integers(len(ORDERED_PLACE_WORDINGS))]
        subtasks = (pick(first), place(first, 'bowl'), pick(second), place(second, 'bowl'))
        instruction = wording.format(a=first, b=second)
    elif family == 'middle_place':
        moved = colours[rng.integers(len(colours))]
        wording = MIDDLE_PLACE_WORDINGS[rng.integers(len(MIDDLE_PLACE_WORDINGS))]
        subtasks = (pick(moved), place(moved, 'middle'))
        instruction = wording.format(a=moved)
    else:
        moved = colours[rng.integers(len(colours))]
        wording = RESTORE_LAYOUT_WORDINGS[rng.integers(len(RESTORE_LAYOUT_WORDINGS))]
        subtasks = (pick(moved), place(moved, 'tray'), pick(moved), place(moved, 'origin'))
        instruction = wording.format(a=moved)
    return TaskSpec(family, int(seed), instruction, subtasks, layout, time_limit_s=30.0)


def subtask_satisfied(spec: TaskSpec, subtask: Subtask, world: World) -> bool:
    pos = world.block_position(subtask.obj)
    if subtask.kind == 'pick':
        return bool(pos[2] > LIFTED_Z)
    if pos[2] > RESTING_Z + TRAY_FLOOR or world.block_grasped(subtask.obj):
        return False
    if subtask.target == 'bowl':
        bowl = world.fixture_position('bowl')
        return bool(np.linalg.norm(pos[:2] - bowl[:2]) < BOWL_RADIUS - 0.01)
    if subtask.target == 'tray':
        tray = world.fixture_position('tray')
        return bool(abs(pos[0] - tray[0]) < TRAY_HALF[0] and abs(pos[1] - tray[1]) < TRAY_HALF[1])
    if subtask.target == 'middle':
        return bool(np.max(np.abs(pos[:2] - np.array(MIDDLE_XY))) < MIDDLE_HALF and pos[2] < RESTING_Z)
    origin = np.array(spec.layout.blocks[subtask.obj][:2])
    return bool(np.linalg.norm(pos[:2] - origin) < ORIGIN_TOLERANCE and pos[2] < RESTING_Z)


class ProgressTracker:
    """Counts subtasks completed in order; call ``update`` after every control step. A block dropped before
    its placement takes the count back to its pick (see `_dropped`)."""

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.done = 0

    @property
    def total(self) -> int:
        return len(self.spec.subtasks)

    def update(self, world: World) -> int:
        if self._dropped(world):   # the pick before the current place is undone: do it again
            self.done -= 1
        while self.done < self.total and subtask_satisfied(self.spec, self.spec.subtasks[self.done], world):
            self.done += 1
        return self.done

    def _dropped(self, world: World) -> bool:
        """The block of the current `place` subtask came to rest outside its target without being placed (it
        slipped or was let go on the way): a perfect boundary detector sends the robot back to picking it up,
        as the scripted expert does."""
        if not 0 < self.done < self.total:
            return False
        current, previous = self.spec.subtasks[self.done], self.spec.subtasks[self.done - 1]
        if current.kind != 'place' or previous.kind != 'pick' or previous.obj != current.obj:
            return False
        pos = world.block_position(current.obj)
        return bool(pos[2] < RESTING_Z + TRAY_FLOOR and not world.block_grasped(current.obj)
                    and not subtask_satisfied(self.spec, current, world))

    def success(self, world: World) -> bool:
        """Every subtask done in order, and each object's last placement still holds now."""
        if self.done < self.total:
            return False
        last_place = {s.obj: s for s in self.spec.subtasks if s.kind == 'place'}
        return all(subtask_satisfied(self.spec, s, world) for s in last_place.values())
