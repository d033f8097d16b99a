"""pi07 models in plain PyTorch: the VLA (vla/), the FAST action tokenizer (fast/), the high-level subtask and
memory decoder (high_level/), and the Gemma/SigLIP-style building blocks they share (common/)."""
