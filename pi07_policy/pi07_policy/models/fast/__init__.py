"""FAST action tokenizer: quantile normalisation, DCT over time, quantisation, BPE (`tokenizers`)."""
from .tokenizer_fast import FASTConfig, FASTTokenizer

__all__ = ['FASTConfig', 'FASTTokenizer']
