"""How short-term visual memory is laid out for the model, shared by the dataset, the rollout and pi07_memory so
that training and deployment agree."""
from __future__ import annotations


def memory_slots(kept: list, frames: int, keep_first: bool = False) -> list:
    """From everything kept at the memory stride (oldest first), the `frames` slots a model sees, oldest first:
    the last `frames` kept; with `keep_first` (a MEM keyframe) the episode's first frame and the last
    `frames` - 1. While fewer exist, the oldest is repeated at the front."""
    if frames < 1:
        raise ValueError(f'frames must be >= 1, got {frames}')
    if keep_first and len(kept) > frames:
        kept = kept[:1] + kept[len(kept) - (frames - 1):] if frames > 1 else kept[:1]
    else:
        kept = kept[-frames:]
    return [kept[0]] * (frames - len(kept)) + kept if kept else []
