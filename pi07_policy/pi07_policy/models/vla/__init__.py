"""The pi07 VLA: SigLIP/Gemma-style backbone + flow-matching action expert (pi0/pi0.5), FAST + KI, RTC."""
from .configuration_vla import (
           PRESETS,
           DecoderConfig,
           ExpertConfig,
           PromptDropout,
           VLAConfig,
           pi05,
           small,
           tiny,
           tiny_conv,
)
from .modeling_vla import PrefixCache, VLAModel, count_parameters
from .policy import VLAPolicy
from .processing_vla import RobotSpec, VLAProcessor, compute_norm_stats
from .sampling import rtc_weights, sample_plain, sample_rtc

__all__ = ['PRESETS', 'DecoderConfig', 'ExpertConfig', 'PrefixCache', 'PromptDropout', 'RobotSpec', 'VLAConfig',
           'VLAModel', 'VLAPolicy', 'VLAProcessor', 'compute_norm_stats', 'count_parameters', 'pi05', 'rtc_weights',
           'sample_plain', 'sample_rtc', 'small', 'tiny', 'tiny_conv']
