"""FAST (Pertsch et al. 2025): action chunks -> a short sequence of discrete tokens, and back.

    chunk (H, D) robot units
      -> per-dimension quantile normalisation to [-1, 1] (q01 -> -1, q99 -> +1, clipped)
      -> DCT-II over time, orthonormal, per dimension             (H, D) coefficients, energy in low frequencies
      -> round(coeff * scale) to integers                          most high-frequency entries become 0
      -> flatten frequency-major (all dims of freq 0, then freq 1, ...) and map each integer to one character
      -> BPE (HuggingFace `tokenizers`, trained on the fitted chunks) merges frequent runs (the many zeros)
      -> token ids in [0, vocab_size)

Decoding inverts each step; a malformed sequence (too few/many coefficients, as a model may emit) is padded with
zeros or cut, so decoding always returns an (H, D) chunk.

Error bound (normalised space, inputs within the quantile range): rounding moves every DCT coefficient by at most
0.5 / scale, and the orthonormal DCT preserves the L2 norm, so per dimension the time-series RMS error is at most
0.5 / scale and any single entry's error at most 0.5 * sqrt(H) / scale. In robot units multiply by (q99 - q01) / 2.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, trainers

CHAR_BASE = 0x4E00  # map integers to CJK code points: printable, no whitespace, no special meaning to BPE


@dataclass(frozen=True)
class FASTConfig:
    horizon: int = 50
    action_dim: int = 14
    scale: float = 10.0           # DCT coefficients are multiplied by this before rounding
    vocab_size: int = 1024        # BPE vocabulary (includes the single-character alphabet)
    max_coeff: int = 127          # integers are clipped to [-max_coeff, max_coeff]
    quantile_low: float = 0.01
    quantile_high: float = 0.99


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C (n, n): coeffs = C @ x, x = C.T @ coeffs."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    c = np.cos(math.pi * (2 * t + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


class FASTTokenizer:
    def __init__(self, config: FASTConfig, low: np.ndarray, high: np.ndarray, bpe: Tokenizer):
        self.config = config
        self.low = np.asarray(low, np.float64)     # (D,) per-dimension q01
        self.high = np.asarray(high, np.float64)   # (D,) per-dimension q99
        self.bpe = bpe
        self._dct = dct_matrix(config.horizon)
        self._alphabet = 2 * config.max_coeff + 1

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, chunks: np.ndarray, config: FASTConfig | None = None) -> FASTTokenizer:
        """Fit quantiles and the BPE merges on action chunks (N, H, D) in robot units."""
        chunks = np.asarray(chunks, np.float64)
        n, h, d = chunks.shape
        config = config or FASTConfig(horizon=h, action_dim=d)
        if (h, d) != (config.horizon, config.action_dim):
            raise ValueError(f'chunks are {(h, d)}, config says {(config.horizon, config.action_dim)}')
        flat = chunks.reshape(-1, d)
        low = np.quantile(flat, config.quantile_low, axis=0)
        high = np.quantile(flat, config.quantile_high, axis=0)
        alphabet = [chr(CHAR_BASE + i) for i in range(2 * config.max_coeff + 1)]
        if config.vocab_size < len(alphabet):
            raise ValueError(f'vocab_size {config.vocab_size} < alphabet {len(alphabet)} (2*max_coeff+1)')
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, initial_alphabet=alphabet, special_tokens=[],
                                      show_progress=False, max_token_length=64)
        tok = cls(config, low, high, bpe)
        bpe.train_from_iterator((tok._to_string(tok._quantise(c)) for c in chunks), trainer=trainer)
        # Every alphabet character must be a token (a coefficient unseen in fitting must still encode).
        missing = [ch for ch in alphabet if bpe.token_to_id(ch) is None]
        if missing:
            bpe.add_tokens(missing)
        return tok

    # ------------------------------------------------------------------ steps
    def normalise(self, chunk: np.ndarray) -> np.ndarray:
        span = np.maximum(self.high - self.low, 1e-8)
        return np.clip(2.0 * (chunk - self.low) / span - 1.0, -1.0, 1.0)

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        return (x + 1.0) / 2.0 * (self.high - self.low) + self.low

    def _quantise(self, chunk: np.ndarray) -> np.ndarray:
        coeffs = self._dct @ self.normalise(np.asarray(chunk, np.float64))      # (H, D)
        q = np.rint(coeffs * self.config.scale).astype(np.int64)
        return np.clip(q, -self.config.max_coeff, self.config.max_coeff)

    def _to_string(self, q: np.ndarray) -> str:
        return ''.join(chr(CHAR_BASE + int(v) + self.config.max_coeff) for v in q.reshape(-1))  # freq-major

    # ------------------------------------------------------------------ public
    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size()

    def encode(self, chunk: np.ndarray) -> list[int]:
        """(H, D) robot-unit chunk -> token ids."""
        return self.bpe.encode(self._to_string(self._quantise(chunk))).ids

    def decode(self, ids: list[int] | np.ndarray) -> np.ndarray:
        """Token ids -> (H, D) chunk in robot units (malformed sequences are padded with zeros or cut)."""
        cfg = self.config
        chars = ''.join(self.bpe.id_to_token(int(i)) or '' for i in ids)
        vals = [ord(c) - CHAR_BASE - cfg.max_coeff for c in chars if 0 <= ord(c) - CHAR_BASE < self._alphabet]
        n = cfg.horizon * cfg.action_dim
        q = np.zeros(n, np.float64)
        q[: min(n, len(vals))] = vals[:n]
        coeffs = q.reshape(cfg.horizon, cfg.action_dim) / cfg.scale
        return self.denormalise(np.clip(self._dct.T @ coeffs, -1.0, 1.0)).astype(np.float32)

    def compression_ratio(self, chunks: np.ndarray) -> float:
        """Mean (H * D) / number of tokens over the chunks."""
        lengths = [len(self.encode(c)) for c in chunks]
        return float(self.config.horizon * self.config.action_dim / max(1e-9, np.mean(lengths)))

    def error_bound(self) -> dict[str, float]:
        """The bounds of the module docstring, in normalised units (per dimension)."""
        return {'rms': 0.5 / self.config.scale, 'max_abs': 0.5 * math.sqrt(self.config.horizon) / self.config.scale}

    # ------------------------------------------------------------------ files
    def to_files(self) -> dict[str, object]:
        """{'fast_tokenizer.json': <tokenizers json str>, 'fast_config.json': {...}} for a checkpoint."""
        meta = {'config': asdict(self.config), 'low': self.low.tolist(), 'high': self.high.tolist()}
        return {'fast_tokenizer.json': self.bpe.to_str(), 'fast_config.json': meta}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self.to_files().items():
            (directory / name).write_text(content if isinstance(content, str) else json.dumps(content))

    @classmethod
    def load(cls, directory: str | Path) -> FASTTokenizer:
        directory = Path(directory)
        meta = json.loads((directory / 'fast_config.json').read_text())
        bpe = Tokenizer.from_file(str(directory / 'fast_tokenizer.json'))
        return cls(FASTConfig(**meta['config']), np.asarray(meta['low']), np.asarray(meta['high']), bpe)
