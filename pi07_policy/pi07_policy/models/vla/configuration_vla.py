"""VLA configuration: frozen dataclasses (openpi style), with presets `tiny`, `small` and `pi05`.

The backbone (SigLIP-style vision encoder + Gemma-style decoder) and the action expert (a narrower Gemma with
the same depth, heads and head size, so that the two share one attention per layer as in pi0) are described by
plain dataclasses that convert to transformers' `SiglipVisionConfig` / `GemmaConfig`, so a real PaliGemma /
pi0.5 checkpoint's dimensions can be written down here and its weights mapped in by name.

Decoder vocabulary = text tokens [0, text_vocab_size) + FAST action tokens [text_vocab_size, +fast_vocab_size)
+ FAST end-of-actions + FAST begin-of-actions (PaliGemma/pi0-FAST likewise put FAST tokens in the LM vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..common.vision import VisionConfig


@dataclass(frozen=True)
class DecoderConfig:
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 1
    head_dim: int = 48
    intermediate_size: int = 768
    rope_theta: float = 10000.0

    def to_transformers(self, vocab_size: int):
        from transformers import GemmaConfig
        return GemmaConfig(vocab_size=vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
                           num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
                           head_dim=self.head_dim, rope_theta=self.rope_theta)


@dataclass(frozen=True)
class ExpertConfig:
    """The action expert: its own width and MLP; depth, heads and head_dim are the decoder's (shared attention)."""

    hidden_size: int = 128
    intermediate_size: int = 512


@dataclass(frozen=True)
class PromptDropout:
    """Training-time probability that each prompt component is removed from a sample (pi0.7: any subset of the
    prompt works at inference). Cameras: each camera beyond the first is dropped with `extra_camera`."""

    task: float = 0.05
    subtask: float = 0.3
    metadata: float = 0.3
    subgoal: float = 0.4
    memory: float = 0.3
    extra_camera: float = 0.1


@dataclass(frozen=True)
class VLAConfig:
    model_type: str = 'pi07_vla'
    vision: VisionConfig = field(default_factory=VisionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    text_vocab_size: int = 1024
    fast_vocab_size: int = 512
    # prompt layout
    max_cameras: int = 3
    max_memory_frames: int = 6
    memory_image_size: int = 48          # past frames are encoded smaller ...
    memory_tokens_per_frame: int = 4     # ... and pooled to this many tokens (a square: 1, 4, 9, ...)
    max_text_tokens: int = 48
    # A prompt longer than max_text_tokens loses the end of its task, never its subtask (the part the high-level
    # policy steers with). False: the prompt's end is cut, subtask first, as checkpoints written without the key
    # were trained; the presets set True.
    keep_subtask: bool = False
    max_fast_tokens: int = 96
    # robot interface (the model's padded dimensions; per-robot dimensions live in processing)
    state_dim: int = 14
    action_dim: int = 14
    action_horizon: int = 50
    # flow matching (openpi convention: x_t = t * noise + (1 - t) * actions, t: 1 -> 0 when sampling)
    num_flow_steps: int = 10
    time_beta_alpha: float = 1.5
    time_beta_beta: float = 1.0
    # Knowledge Insulation: the backbone learns from FAST tokens; the flow loss does not reach it.
    knowledge_insulation: bool = True
    fast_loss_weight: float = 1.0
    flow_loss_weight: float = 1.0
    # Training: noise/time draws per sample, all reading the same prefix. The backbone dominates a step's cost,
    # so k draws cost little more than one and average out much of the flow loss's variance.
    flow_samples: int = 1
    # Auxiliary goal-state loss: a head on the backbone's state token predicts the (normalised) joint state at
    # the end of the current subtask, i.e. where the demonstrator grasped or released. Action chunks only say
    # "move this way" for the next second; this target says where the named object is, at every step of the
    # approach, which is what a model trained from scratch struggles to learn (docs/models.md). 0: no head.
    goal_loss_weight: float = 0.0
    # Goal-conditioned expert (needs the goal heads): the image encoder's goal prediction, detached, and the state
    # condition the expert's adaRMS norms beside the flow time: the head locates the named object better than the
    # chunks alone follow it (docs/data.md), so the expert gets the target to servo to, re-estimated from the
    # current images at every chunk. In training a fraction of samples gets the true goal plus Gaussian noise
    # (normalised units) instead, so the expert learns to follow the goal input rather than to ignore it.
    # (The backbone's head is not used: it sees the state and learns "the goal is where I am heading", which in
    # closed loop follows the robot's own errors.) False: the expert reads the prefix only (older checkpoints).
    goal_conditioning: bool = False
    goal_teacher_forcing: float = 0.5   # fraction of training samples given the true goal ...
    goal_noise: float = 0.1             # ... plus this Gaussian noise (normalised units)
    # The image encoder's goal head reads the state (True: older checkpoints), or predicts the displacement from the
    # state to the goal from the images alone (False): it cannot learn "the goal is where I am heading" then, and
    # the wrist camera shows the displacement directly once near.
    vision_goal_reads_state: bool = True
    # Memory keyframe (MEM keeps keyframes, not only the latest frames): the oldest memory slot holds the
    # episode's first frame (`memory_keeps_first_frame`: what the dataset, the rollout and pi07_memory's
    # `keep_first_frame` give the model), and the image encoder's goal head reads that frame's summary beside
    # the current images' (`vision_goal_reads_memory`), so a goal that only the start of the episode shows (where
    # a moved block stood: restore_layout) can be located. Without memory in the prompt that input is zeros.
    memory_keeps_first_frame: bool = False
    vision_goal_reads_memory: bool = False
    # The keyframe is read by its own copy of the image encoder (`keyframe_vision`), used by the goal head only:
    # that path can then be trained after the VLA (`train vla --goal-head-only`) without moving the tokens the
    # backbone and the expert were trained on.
    keyframe_encoder: bool = False
    # Subgoal images read by the goal head (π0.7's visual subgoals as a goal, not only as prompt tokens): a subgoal
    # image of the subtask done shows the robot where the subtask ends, which is the goal head's target. Read by
    # their own copy of the image encoder (`subgoal_vision`), like the keyframe, so the path can be trained after
    # the VLA (`train vla --goal-head-only --subgoal-goal-head`); without subgoal images that input is zeros.
    vision_goal_reads_subgoal: bool = False
    # Training-time Real-Time Chunking (Black et al. 2025, "Training-Time Action Conditioning for Efficient
    # Real-Time Chunking"): a fraction `rtc_train_prob` of the training samples gets the first d ~ U{1..
    # rtc_max_delay} actions of its chunk clean (flow time 0 on those tokens, no loss on them): the rows the robot
    # executes from the previous chunk while this one is computed. A model trained so samples RTC chunks by
    # conditioning on the frozen rows (no guidance, no backward pass through the expert: as cheap as a plain
    # chunk); 0: RTC uses guided inpainting (sampling.sample_rtc), which needs no training change.
    rtc_train_prob: float = 0.0
    rtc_max_delay: int = 0
    # The frozen rows a model sees in closed loop are its own earlier plan, made from an older observation, not
    # the demonstrator's: with rtc_prefix_noise > 0 they are given off course in training, by a heading error
    # growing along the prefix to N(0, rtc_prefix_noise^2) per dimension (normalised units) at its last row, while
    # the rows after keep the demonstration's, so the model learns to return to where the images say rather than
    # to continue whatever the prefix does (a model trained on clean prefixes trusted them over its images:
    # docs/data.md, session 14).
    rtc_prefix_noise: float = 0.0
    dropout: PromptDropout = field(default_factory=PromptDropout)

    @property
    def fast_offset(self) -> int:
        return self.text_vocab_size

    @property
    def fast_eos_id(self) -> int:      # id within the FAST sub-vocabulary
        return self.fast_vocab_size

    @property
    def fast_bos_token(self) -> int:   # id in the full vocabulary
        return self.text_vocab_size + self.fast_vocab_size + 1

    @property
    def vocab_size(self) -> int:
        return self.text_vocab_size + self.fast_vocab_size + 2

    def __post_init__(self):
        if self.decoder.num_heads % self.decoder.num_kv_heads:
            raise ValueError('decoder.num_heads must be a multiple of num_kv_heads')
        side = round(self.memory_tokens_per_frame ** 0.5)
        if side * side != self.memory_tokens_per_frame:
            raise ValueError('memory_tokens_per_frame must be a square (1, 4, 9, ...)')
        if self.goal_conditioning and not self.goal_loss_weight > 0:
            raise ValueError('goal_conditioning needs the goal heads (goal_loss_weight > 0)')
        if not self.vision_goal_reads_state and not self.goal_loss_weight > 0:
            raise ValueError('vision_goal_reads_state=False sets up a goal head: it needs goal_loss_weight > 0')
        if self.vision_goal_reads_memory and not self.goal_loss_weight > 0:
            raise ValueError('vision_goal_reads_memory needs the goal heads (goal_loss_weight > 0)')
        if self.keyframe_encoder and not self.vision_goal_reads_memory:
            raise ValueError('keyframe_encoder is the goal head\'s keyframe path: it needs vision_goal_reads_memory')
        if self.vision_goal_reads_subgoal and not self.goal_loss_weight > 0:
            raise ValueError('vision_goal_reads_subgoal needs the goal heads (goal_loss_weight > 0)')
        if not self.rtc_prefix_noise >= 0:
            raise ValueError(f'rtc_prefix_noise must be >= 0, got {self.rtc_prefix_noise}')
        if not 0 <= self.rtc_train_prob <= 1:
            raise ValueError(f'rtc_train_prob must be in [0, 1], got {self.rtc_train_prob}')
        if self.rtc_train_prob > 0 and not 1 <= self.rtc_max_delay < self.action_horizon:
            raise ValueError(f'rtc_max_delay must be in [1, action_horizon) with rtc_train_prob > 0, got '
                             f'{self.rtc_max_delay} (horizon {self.action_horizon})')
        if not 0 <= self.goal_teacher_forcing <= 1 or not self.goal_noise >= 0:
            raise ValueError(f'goal_teacher_forcing must be in [0, 1] and goal_noise >= 0, got '
                             f'{self.goal_teacher_forcing}, {self.goal_noise}')


def tiny(**overrides) -> VLAConfig:
    """~5M parameters: tests and the CPU benchmark."""
    return replace(VLAConfig(keep_subtask=True), **overrides)


def tiny_conv(**overrides) -> VLAConfig:
    """`tiny` with the convolutional image encoder: the preset for training from scratch on a few hundred
    demonstrations on a CPU, where a ViT has too little data to learn where things are. 16 x 16 px per token
    (16 grid tokens per 64 px camera, as `tiny`; 8 px cells cost ~2.5x per step here), FiLM from the prompt (the
    feature maps can single out the object the subtask names) and 16 spatial-softmax keypoints per camera.
    (film_source='subtask' is available; its one run, together with the recover bags, did worse: docs/data.md.)"""
    vision = VisionConfig(kind='conv', image_size=64, patch_size=16, hidden_size=128, film=True, keypoints=16)
    return replace(VLAConfig(vision=vision, keep_subtask=True), **overrides)


def small(**overrides) -> VLAConfig:
    """~40M parameters: demos on CPU."""
    cfg = VLAConfig(vision=VisionConfig(hidden_size=256, intermediate_size=1024, num_layers=6, num_heads=4),
                    decoder=DecoderConfig(hidden_size=384, num_layers=8, num_heads=6, num_kv_heads=1, head_dim=64,
                                          intermediate_size=2048),
                    expert=ExpertConfig(hidden_size=256, intermediate_size=1024),
                    text_vocab_size=4096, fast_vocab_size=1024, keep_subtask=True)
    return replace(cfg, **overrides)


def pi05(**overrides) -> VLAConfig:
    """The real pi0.5 dimensions: PaliGemma-2B-style backbone (SigLIP So400m/14 at 224 px + Gemma 2B, 257152-token
    vocabulary) and a Gemma-300M action expert with adaRMS. ~3.3B parameters; build it on the meta device."""
    cfg = VLAConfig(vision=VisionConfig(image_size=224, patch_size=14, hidden_size=1152, intermediate_size=4304,
                                        num_layers=27, num_heads=16),
                    decoder=DecoderConfig(hidden_size=2048, num_layers=18, num_heads=8, num_kv_heads=1, head_dim=256,
                                          intermediate_size=16384),
                    expert=ExpertConfig(hidden_size=1024, intermediate_size=4096),
                    text_vocab_size=257152 - 2048 - 2, fast_vocab_size=2048, memory_image_size=112,
                    max_text_tokens=200, max_fast_tokens=256, state_dim=32, action_dim=32, keep_subtask=True)
    return replace(cfg, **overrides)


PRESETS = {'tiny': tiny, 'tiny_conv': tiny_conv, 'small': small, 'pi05': pi05}
