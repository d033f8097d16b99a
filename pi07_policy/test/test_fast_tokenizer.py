"""FAST: round-trip error within the stated bound, compression, save/load, robust decoding."""
import numpy as np
import pytest

from pi07_policy.models.fast import FASTConfig, FASTTokenizer


def smooth_chunks(n, horizon=50, dim=14, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    freq = rng.uniform(0.2, 1.5, (n, 1, dim))
    return (rng.uniform(0.2, 2.0, (n, 1, dim)) * np.sin(2 * np.pi * (freq * t + rng.uniform(0, 1, (n, 1, dim))))
            + rng.normal(0, 0.5, (n, 1, dim))).astype(np.float32)


@pytest.fixture(scope='module')
def fitted():
    return FASTTokenizer.fit(smooth_chunks(200), FASTConfig(horizon=50, action_dim=14, vocab_size=512))


def test_round_trip_error_within_bound(fitted):
    held_out = smooth_chunks(30, seed=1)
    bound = fitted.error_bound()
    for chunk in held_out:
        rec = fitted.decode(fitted.encode(chunk))
        assert rec.shape == (50, 14) and rec.dtype == np.float32
        err = fitted.normalise(rec) - fitted.normalise(chunk)          # normalised units, clipping included
        assert np.sqrt((err ** 2).mean(axis=0)).max() <= bound['rms'] + 1e-6
        assert np.abs(err).max() <= bound['max_abs'] + 1e-6
    # In robot units the typical error is small compared with the signal.
    rec = np.stack([fitted.decode(fitted.encode(c)) for c in held_out])
    assert np.abs(rec - held_out).mean() < 0.05 * np.abs(held_out).mean()


def test_compression_ratio(fitted):
    ratio = fitted.compression_ratio(smooth_chunks(30, seed=2))
    assert ratio >= 5.0, ratio   # 700 numbers -> at most 140 tokens


def test_save_load_and_malformed_sequences(fitted, tmp_path):
    fitted.save(tmp_path)
    loaded = FASTTokenizer.load(tmp_path)
    chunk = smooth_chunks(1, seed=3)[0]
    ids = fitted.encode(chunk)
    assert loaded.encode(chunk) == ids
    assert np.array_equal(loaded.decode(ids), fitted.decode(ids))
    assert all(0 <= i < fitted.vocab_size for i in ids)
    for bad in ([], ids[: len(ids) // 2], ids * 3):        # too short / too long: still an (H, D) chunk
        out = fitted.decode(bad)
        assert out.shape == (50, 14) and np.isfinite(out).all()
