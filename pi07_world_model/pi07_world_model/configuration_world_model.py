"""Configuration of the pi07 world model (frozen dataclasses, openpi style).

The world model generates one subgoal image per camera: what that camera should see when the current subtask
is done (pi0.7). It is a latent flow-matching generator:

    current images --VAE encoder--> context latents ─┐
    subtask + task text --text encoder--> tokens ────┼──> conditional UNet  --Euler steps-->  subgoal latents
    metadata (speed, quality, ...) --embeddings──────┘                                             │
                                                                        VAE decoder <──────────────┘

`WorldModelConfig` holds every size; `tiny` is the default (fast on one CPU thread), `test` is smaller still.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Metadata vocabularies. Index 0 is always "unspecified": a missing field (or one dropped at training time)
# maps to it, so every subset of metadata is a valid input.
SPEED_VALUES = (1, 2, 3, 4, 5)          # EpisodeMetadata.speed: 1 (slowest) .. 5 (fastest)
QUALITY_VALUES = (1, 2, 3, 4, 5)        # EpisodeMetadata.quality: 1 (poor) .. 5 (expert)
MISTAKE_VALUES = (False, True)          # EpisodeMetadata.mistake: 0 no, 1 yes
CONTROL_MODE_VALUES = ('joint', 'ee')   # EpisodeMetadata.control_mode


@dataclass(frozen=True)
class VAEConfig:
    """A small convolutional VAE: image (3, S, S) in [-1, 1] <-> latent (latent_channels, S/f, S/f)."""

    # Channels of each encoder resolution level; len(channels) - 1 downsamplings by 2 (f = 2 ** (len - 1)).
    channels: tuple[int, ...] = (32, 64, 128, 128)
    latent_channels: int = 4
    # Weight of the KL term relative to the per-pixel reconstruction loss (kept small: we want sharp images
    # and a latent space that is merely smooth, not a good prior).
    kl_weight: float = 1e-4

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class TextEncoderConfig:
    """A small transformer over the tokens of "task: ... subtask: ..." (tokenizer trained on the project texts)."""

    vocab_size: int = 1024       # upper bound for the trained tokenizer; unused rows stay at their init
    max_tokens: int = 32
    dim: int = 128
    depth: int = 2
    heads: int = 4


@dataclass(frozen=True)
class UNetConfig:
    """The denoiser over latents: a UNet whose attention levels mix all cameras and attend to the text."""

    channels: tuple[int, ...] = (64, 128, 192)
    # Whether each level (same length as channels) has multi-view self-attention + text cross-attention.
    attention: tuple[bool, ...] = (False, True, True)
    res_blocks: int = 1
    heads: int = 4
    groups: int = 16             # GroupNorm groups (must divide every channel count)
    cond_dim: int = 256          # global conditioning vector: flow time + metadata + pooled text + camera


@dataclass(frozen=True)
class WorldModelConfig:
    """Everything that fixes the world model's shapes and its sampling; saved as config.json in checkpoints."""

    camera_names: tuple[str, ...] = ('scene', 'wrist')
    image_size: int = 96
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    # Sampling: fixed number of Euler steps from noise (t=0) to data (t=1).
    num_flow_steps: int = 10
    # Training: probability of dropping each conditioning component on its own (pi0.7-style prompt dropout),
    # so that any subset of {current images, subtask, task, each metadata field} is a valid input.
    drop_prob_image: float = 0.1
    drop_prob_subtask: float = 0.1
    drop_prob_task: float = 0.3
    drop_prob_metadata: float = 0.3

    def __post_init__(self):
        if self.image_size % self.vae.downsample:
            raise ValueError(f'image_size {self.image_size} must be a multiple of the VAE downsampling '
                             f'{self.vae.downsample}')
        latent_size = self.image_size // self.vae.downsample
        if latent_size % (2 ** (len(self.unet.channels) - 1)):
            raise ValueError(f'latent size {latent_size} must be divisible by 2 ** (UNet levels - 1)')
        if len(self.unet.attention) != len(self.unet.channels):
            raise ValueError('unet.attention must have one entry per unet.channels level')
        if len(set(self.camera_names)) != len(self.camera_names) or not self.camera_names:
            raise ValueError(f'camera_names must be non-empty and unique, got {self.camera_names}')

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae.downsample

    # --- (de)serialisation: plain JSON, nested dataclasses, tuples restored ---------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps({'model_type': 'pi07_world_model', **self.to_dict()}, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        data = dict(data)
        model_type = data.pop('model_type', 'pi07_world_model')
        if model_type != 'pi07_world_model':
            raise ValueError(f'config is for model_type={model_type!r}, not a pi07 world model')
        sub = {'vae': VAEConfig, 'text': TextEncoderConfig, 'unet': UNetConfig}
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data.pop(f.name)
            if f.name in sub:
                value = _build(sub[f.name], value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        if data:
            raise ValueError(f'unknown world-model config keys: {sorted(data)}')
        return cls(**kwargs)


def _build(klass, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f'unknown {klass.__name__} keys: {sorted(unknown)}')
    return klass(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def tiny() -> WorldModelConfig:
    """Default: 96 px, 12x12x4 latents; two cameras in well under 0.5 s on one CPU thread."""
    return WorldModelConfig()


def test_config(image_size: int = 32, camera_names: tuple[str, ...] = ('scene', 'wrist')) -> WorldModelConfig:
    """Smallest useful model, for unit tests (trains to overfitting in tens of seconds on one thread)."""
    return WorldModelConfig(
        camera_names=camera_names,
        image_size=image_size,
        vae=VAEConfig(channels=(16, 32, 32), latent_channels=4),
        text=TextEncoderConfig(vocab_size=256, max_tokens=24, dim=64, depth=1, heads=4),
        unet=UNetConfig(channels=(64, 96), attention=(True, True), heads=4, groups=16, cond_dim=128),
        num_flow_steps=8,
    )


CONFIGS = {'tiny': tiny, 'test': test_config}
