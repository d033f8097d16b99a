"""Small, randomly initialised checkpoints for a profile, for tests of the ROS stack (behaviour, not skill)."""
from __future__ import annotations

from pathlib import Path

import torch

CORPUS = ['put the red block in the bowl, then the blue one', 'pick up the red block',
          'place the red block in the bowl', 'pick up the blue block', 'place the blue block in the bowl',
          'The red block is in the bowl.']


def make_checkpoints(profile, out: Path, seed: int = 0) -> dict[str, str]:
    """Write VLA, high-level and world-model checkpoints matching ``profile``; return node -> path."""
    from pi07_policy.models.high_level.configuration_high_level import micro as hl_micro
    from pi07_policy.models.high_level.modeling_high_level import HighLevelModel
    from pi07_policy.models.high_level.policy import HighLevelPolicy
    from pi07_policy.models.high_level.processing_high_level import HighLevelProcessor
    from pi07_policy.models.vla.micro import micro
    from pi07_policy.models.vla.modeling_vla import VLAModel
    from pi07_policy.models.vla.policy import VLAPolicy
    from pi07_policy.models.vla.processing_vla import RobotSpec, VLAProcessor
    from pi07_world_model.configuration_world_model import micro as wm_micro
    from pi07_world_model.modeling_world_model import WorldModel
    from pi07_world_model.processing_world_model import WorldModelProcessor

    torch.manual_seed(seed)
    cameras = tuple(profile.camera_names)
    dims = dict(state_dim=len(profile.state_joint_names), action_dim=profile.action_dim)
    config = micro(**dims)
    robot = RobotSpec(camera_names=cameras, embodiment=profile.embodiment, norm_mode='mean_std', **dims)
    vla = VLAPolicy(VLAModel(config), VLAProcessor.build(config, robot, corpus=CORPUS, fit_fast=False))
    paths = {'action_expert': str(vla.save(out / 'vla'))}
    hl_config = hl_micro()
    hl = HighLevelPolicy(HighLevelModel(hl_config), HighLevelProcessor.build(hl_config, corpus=CORPUS,
                                                                             camera_names=cameras))
    paths['high_level_policy'] = str(hl.save(out / 'high_level', embodiment=profile.embodiment))
    wm_config = wm_micro(image_size=32, camera_names=cameras)
    wm = WorldModel(wm_config, WorldModelProcessor.from_texts(wm_config, CORPUS))
    paths['world_model'] = str(wm.save_pretrained(out / 'world_model', embodiment=profile.embodiment))
    return paths
