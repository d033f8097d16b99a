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

from dataclasses import dataclass, field

# Metadata vocabularies. Index 0 is always "unspecified": a missing field (or one dropped at training time)
# maps to it, so every subset of metadata is a valid input.
SPEED_VALUES = (1, 2, 3, 4, 5)          # EpisodeMetadata.speed: 1 (slowest) .. 5 (fastest)
QUALITY_VALUES = (1, 2, 3, 4, 5)        # EpisodeMetadata.quality: 1 (poor) .. 5 (expert)
MISTAKE_VALUES = (False, True)          # EpisodeMetadata.mistake: 0 no, 1 yes
CONTROL_MODE_VALUES = ('joint', 'ee')   # EpisodeMetadata.control_mode


@dataclass(frozen=True)
class VAEConfig:
    """A small patch VAE: image (3, S, S) in [-1, 1] <-> latent (latent_channels, S/patch_size, S/patch_size)."""

    patch_size: int = 8          # downsampling factor: each latent cell encodes a patch_size^2 pixel patch
    hidden: int = 128            # channels of the convolutions (all at latent resolution)
    res_blocks: int = 2          # residual blocks in the encoder and in the decoder
    latent_channels: int = 8
    # Weight of the KL term relative to the per-pixel reconstruction loss (kept small: we want sharp images
    # and a latent space that is merely smooth, not a good prior).
    kl_weight: float = 1e-4

    @property
    def downsample(self) -> int:
        return self.patch_size


@dataclass(frozen=True)
class TextEncoderConfig:
    """A small transformer over the tokens of "task: ... subtask: ..." (tokenizer trained on the project texts)."""

    vocab_size: int = 1024       # upper bound for the trained tokenizer; unused rows stay at their init
    max_tokens: int = 32
    # A prompt longer than max_tokens loses the end of its task, never its subtask (the part that changes within
    # an episode). False: the prompt's tail is cut, subtask first, as checkpoints written without the key were
    # trained (the presets' 24 tokens cut every subtask of the sim's tasks; docs/world_model.md).
    keep_subtask: bool = False
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
    # 2D sine-cosine positions added to the attention tokens (the presets turn them on: better on held-out data).
    # The default False is what checkpoints written before this option existed were trained with.
    position_embedding: bool = False


@dataclass(frozen=True)
class WorldModelConfig:
    """Everything that fixes the world model's shapes and its sampling; saved in the checkpoint's config.json
    (pi07_policy.checkpoint.config_to_dict / config_from_dict)."""

    model_type: str = 'pi07_world_model'
    camera_names: tuple[str, ...] = ('scene', 'wrist')
    image_size: int = 96
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    # Sampling: fixed number of Euler steps from the (noised) current scene at t=0 to the subgoal at t=1.
    num_flow_steps: int = 10
    # Std of the noise added to the current image's latent to make the flow's source (in units of the normalised
    # latent); the source is pure noise when the current image is absent. 0 would make generation deterministic.
    source_noise: float = 0.5
    # Classifier-free guidance on the prompt (text + metadata) at sampling; 1.0 = off (half the cost).
    guidance_scale: float = 1.0
    # Training: probability of dropping each conditioning component on its own (pi0.7-style prompt dropout),
    # so that any subset of {current images, subtask, task, each metadata field} is a valid input.
    drop_prob_image: float = 0.1
    drop_prob_subtask: float = 0.1
    drop_prob_task: float = 0.3
    drop_prob_metadata: float = 0.3
    # A MEM keyframe as a second image input: each camera's first frame of the task (the memory node's oldest slot
    # with keep_first_frame), entering the UNet as more latent channels beside the current scene. A subtask such as
    # "put the red block back where it was" names a place only that frame shows; without it the world model cannot
    # draw it. Dropped in training with drop_prob_keyframe, so the model also works without one.
    reads_keyframe: bool = False
    drop_prob_keyframe: float = 0.2

    def __post_init__(self):
        if self.image_size % self.vae.downsample:
            raise ValueError(f'image_size {self.image_size} must be a multiple of the VAE downsampling '
                             f'{self.vae.downsample}')
        latent_size = self.image_size // self.vae.downsample
        if latent_size % (2 ** (len(self.unet.channels) - 1)):
            raise ValueError(f'latent size {latent_size} must be divisible by 2 ** (UNet levels - 1)')
        if len(self.unet.attention) != len(self.unet.channels):
            raise ValueError('unet.attention must have one entry per unet.channels level')
        if self.text.max_tokens < 2:   # BOS and at least one token of the prompt
            raise ValueError(f'text.max_tokens must be >= 2, got {self.text.max_tokens}')
        if self.model_type != 'pi07_world_model':
            raise ValueError(f'model_type {self.model_type!r} is not a pi07 world model')
        if len(set(self.camera_names)) != len(self.camera_names) or not self.camera_names:
            raise ValueError(f'camera_names must be non-empty and unique, got {self.camera_names}')

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae.downsample


def tiny() -> WorldModelConfig:
    """Default: 96 px, 12x12x8 latents; two cameras in well under 0.5 s on one CPU thread."""
    return WorldModelConfig(text=TextEncoderConfig(max_tokens=48, keep_subtask=True),
                            unet=UNetConfig(position_embedding=True))


def micro(image_size: int = 32, camera_names: tuple[str, ...] = ('scene', 'wrist')) -> WorldModelConfig:
    """Smallest useful model, for unit tests (trains to overfitting in tens of seconds on one thread)."""
    return WorldModelConfig(
        camera_names=camera_names,
        image_size=image_size,
        vae=VAEConfig(patch_size=4, hidden=64, res_blocks=1, latent_channels=8),
        text=TextEncoderConfig(vocab_size=512, max_tokens=48, dim=64, depth=1, heads=4, keep_subtask=True),
        unet=UNetConfig(channels=(64, 96), attention=(True, True), heads=4, groups=16, cond_dim=128,
                        position_embedding=True),
        num_flow_steps=8,
    )


CONFIGS = {'tiny': tiny, 'micro': micro}
