"""Building blocks shared by the VLA and the high-level decoder."""
