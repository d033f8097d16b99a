"""The VLA behind the openpi-style policy boundary: dict in, dict out, robot units on both sides.

    policy = VLAPolicy.from_checkpoint('/models/pi07_ur5e')
    out = policy.infer({'images': {'front': rgb, 'wrist': rgb}, 'state': q, 'task': 'put the red block ...',
                        'subtask': 'pick up the red block', 'metadata': {'speed': 2, 'quality': 5, ...},
                        'prev_actions': remaining, 'delay_steps': 3, 'execution_horizon': 25, 'mode': 'rtc'})
    out['actions']   # float32 (H, D), robot units; out['frozen_steps'] = d in rtc mode

Keys other than 'images' and 'state' are optional. Mode 'sync' (or no 'prev_actions') samples a fresh chunk
from noise; 'rtc' freezes the first d actions to `prev_actions` and, with `rtc_method` 'guidance', inpaints the
overlap up to s by guidance; with 'frozen' (a model trained with training-time RTC) the model is given the d
frozen actions and continues them. 'auto' (the default) picks 'frozen' for such a model, else 'guidance'.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...checkpoint import load_checkpoint, save_checkpoint
from .configuration_vla import VLAConfig
from .modeling_vla import VLAModel
from .processing_vla import VLAProcessor
from .sampling import sample_frozen, sample_plain, sample_rtc


class VLAPolicy:
    RTC_METHODS = ('auto', 'guidance', 'frozen')

    def __init__(self, model: VLAModel, processor: VLAProcessor, num_steps: int | None = None,
                 max_guidance: float = 5.0, seed: int | None = 0, noise_scale: float = 1.0, rtc_method: str = 'auto'):
        self.model = model.eval()
        self.processor = processor
        self.config: VLAConfig = model.config
        self.num_steps = num_steps or self.config.num_flow_steps
        self.max_guidance = max_guidance
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if not noise_scale >= 0:
            raise ValueError(f'noise_scale must be >= 0 (0: deterministic chunks), got {noise_scale}')
        self.noise_scale = float(noise_scale)
        self.rtc_method = rtc_method   # checked and resolved by the property's setter

    @property
    def rtc_method(self) -> str:
        """How 'rtc' chunks are joined: 'guidance' (inpainting, any flow model) or 'frozen' (training-time RTC)."""
        return self._rtc_method

    @rtc_method.setter
    def rtc_method(self, method: str) -> None:
        if method not in self.RTC_METHODS:
            raise ValueError(f'rtc_method must be one of {self.RTC_METHODS}, got {method!r}')
        trained = self.config.rtc_train_prob > 0
        if method == 'auto':
            method = 'frozen' if trained else 'guidance'
        if method == 'frozen' and not trained:
            raise ValueError("rtc_method 'frozen' needs a model trained with training-time RTC (rtc_train_prob > 0); "
                             "this one was not: use 'guidance'")
        self._rtc_method = method

    def reseed(self, episode_seed: int) -> None:
        """Restart the flow noise from (policy seed, episode seed): an episode's chunks then do not depend on which
        episodes ran before it in this process (rollouts split over processes give the same results)."""
        if self.seed is not None:
            self.generator.manual_seed(self.seed * 1_000_003 + int(episode_seed))

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path, profile: str | Path | None = None) -> Path:
        return save_checkpoint(directory, self.model, self.config, extra_files=self.processor.to_files(),
                               norm_stats=self.processor.norm_stats, profile=profile,
                               embodiment=self.processor.robot.embodiment)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, expected_embodiment: str | None = None, **kwargs) -> VLAPolicy:
        ckpt = load_checkpoint(directory, VLAConfig.model_type, config_cls=VLAConfig,
                               expected_embodiment=expected_embodiment)
        model = VLAModel(ckpt.config)
        from ...checkpoint import load_weights
        load_weights(model, ckpt.state_dict, source=str(directory))
        return cls(model, VLAProcessor.from_checkpoint(ckpt, ckpt.config), **kwargs)

    # ------------------------------------------------------------------------------------------ inference
    def _noise(self) -> torch.Tensor:
        shape = (1, self.config.action_horizon, self.config.action_dim)
        return torch.randn(shape, generator=self.generator) * self.noise_scale

    def infer(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        prev = obs.get('prev_actions')
        mode = obs.get('mode') or ('rtc' if prev is not None and len(prev) else 'sync')
        rtc = mode == 'rtc' and prev is not None and len(prev) > 0
        guided = rtc and self.rtc_method == 'guidance'
        # inference_mode is a little faster, but guidance needs autograd through the expert (cache made under no_grad)
        with torch.no_grad() if guided else torch.inference_mode():
            batch = self.processor.observation_batch(obs)
            cache = self.model.encode_prefix(batch)
        noise = self._noise()
        frozen = 0
        if rtc:
            prev_model = torch.from_numpy(self.processor.actions_to_model(np.asarray(prev, np.float32),
                                                                          obs['state']))[None]
            frozen = int(min(obs.get('delay_steps', 0) or 0, len(prev)))
            if guided:
                overlap = int(obs.get('execution_horizon') or len(prev))
                actions = sample_rtc(self.model, cache, noise, prev_model, frozen, overlap, self.num_steps,
                                     self.max_guidance)
            else:
                actions = sample_frozen(self.model, cache, noise, prev_model, frozen, self.num_steps)
        else:
            mode = 'sync'
            actions = sample_plain(self.model, cache, noise, self.num_steps)
        robot_actions = self.processor.actions_from_model(actions[0], obs['state'])
        if frozen:  # exact, in robot units (normalise/unnormalise round trip would add float error)
            robot_actions[:frozen] = np.asarray(prev, np.float32)[:frozen, : robot_actions.shape[1]]
        return {'actions': robot_actions, 'frozen_steps': frozen, 'mode': mode,
                'inference_ms': (time.perf_counter() - t0) * 1e3}

    @property
    def has_goal_head(self) -> bool:
        return hasattr(self.model, 'vision_goal_head')

    def predict_goal(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The image encoder's goal head: the joint state (robot units, (state_dim,)) where the current subtask
        ends, i.e. where it sees the named object. A diagnostic of perception apart from control (models trained
        with `--goal-weight`); ValueError for a model without the head."""
        if not self.has_goal_head:
            raise ValueError('this VLA has no goal head (trained without --goal-weight)')
        with torch.inference_mode():
            batch = self.processor.observation_batch(obs)
            if 'images' not in batch:
                raise ValueError('predict_goal needs at least one camera image')
            _, cond = self.model._embed_text(batch)
            tokens = self.model._encode_images(batch['images'], batch['image_mask'], 0, cond)
            goal = self.model.vision_goal(tokens, batch)[0]
        return self.processor.state_from_model(goal.float())
