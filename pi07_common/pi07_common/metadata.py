"""pi07_msgs/EpisodeMetadata <-> the models' metadata dict (π0.7 prompt metadata)."""
from __future__ import annotations

from pi07_msgs.msg import EpisodeMetadata


def metadata_to_dict(meta: EpisodeMetadata) -> dict | None:
    """The fields that are specified, as {'speed', 'quality', 'mistake', 'control_mode'}; None when none is.

    Unspecified fields are left out, which drops them from the prompt (the models are trained with each
    component dropped at random)."""
    out = {}
    if meta.speed != EpisodeMetadata.SPEED_UNSPECIFIED:
        out['speed'] = int(meta.speed)
    if meta.quality != EpisodeMetadata.QUALITY_UNSPECIFIED:
        out['quality'] = int(meta.quality)
    if meta.mistake != EpisodeMetadata.MISTAKE_UNSPECIFIED:
        out['mistake'] = meta.mistake == EpisodeMetadata.MISTAKE_YES
    if meta.control_mode:
        out['control_mode'] = meta.control_mode
    return out or None
