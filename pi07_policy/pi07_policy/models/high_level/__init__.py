"""High-level subtask / language-memory decoder (pi0.5 / Hi Robot / MEM) on the VLA's backbone layers."""
from .configuration_high_level import PRESETS, HighLevelConfig, micro, small, tiny
from .modeling_high_level import HighLevelModel
from .policy import HighLevelPolicy
from .processing_high_level import HighLevelProcessor, memory_prompt, subtask_prompt
from .train import train_high_level

__all__ = ['PRESETS', 'HighLevelConfig', 'HighLevelModel', 'HighLevelPolicy', 'HighLevelProcessor', 'memory_prompt',
           'micro', 'small', 'subtask_prompt', 'tiny', 'train_high_level']
