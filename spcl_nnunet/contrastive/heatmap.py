"""Heat-map of the self-paced weight matrix of one batch (the paper's supplementary Fig. 6)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_weight_heatmap(weights: np.ndarray, positions: Sequence[int], cases: Sequence[str], num_views: int,
                        path: str | Path, title: str) -> Path:
    """Save ``weights`` ((V*N, V*N), view-major rows) as a PNG, rows and columns sorted by
    slice position, then scan, then view, so that positive pairs of one partition form blocks.
    Positive and negative pairs are both shown (w is defined on positives only, as in Fig. 6).
    """
    weights = np.asarray(weights, dtype=float)
    n = len(positions)
    if weights.shape != (num_views * n, num_views * n):
        raise ValueError(f"weights must be ({num_views * n}, {num_views * n}) for {n} slices x {num_views} views, "
                         f"got {weights.shape}")
    rows = [(positions[r % n], cases[r % n], r // n, r) for r in range(num_views * n)]
    order = [r for *_, r in sorted(rows)]
    sorted_w = weights[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(sorted_w, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    boundaries = np.flatnonzero(np.diff([positions[r % n] for r in order])) + 0.5
    for b in boundaries:
        ax.axhline(b, color="white", linewidth=0.8)
        ax.axvline(b, color="white", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel("view (sorted by slice position, scan)")
    ax.set_ylabel("view (sorted by slice position, scan)")
    fig.colorbar(image, ax=ax, label="self-paced weight w_ij")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
