"""Loss curves as PNG (matplotlib's Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < 3 or window <= 1:
        return values
    window = min(window, len(values))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode='valid')


def plot_losses(history: list[dict[str, float]], path: str | Path, title: str = 'training') -> Path:
    """One panel per logged quantity (raw + moving average), log-scale where positive."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    keys = sorted({k for row in history for k in row if k != 'step'})
    n = max(1, len(keys))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(row['step'], row[key]) for row in history if key in row and np.isfinite(row[key])]
        if not pts:
            continue
        steps, vals = map(np.asarray, zip(*pts))
        ax.plot(steps, vals, alpha=0.3, lw=0.8)
        ax.plot(steps, smooth(vals, max(1, len(vals) // 20)), lw=1.5)
        if np.all(vals > 0):
            ax.set_yscale('log')
        ax.set_title(key)
        ax.set_xlabel('step')
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
