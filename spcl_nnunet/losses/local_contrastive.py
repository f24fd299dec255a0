"""Local contrastive loss of Chaitanya et al. 2020 (ref. [3]), stage 2 (decoder pre-training).

A dense projector maps a decoder feature of each view to a (B, D, g, g) grid of embeddings
(g = 10). Per image, ``num_points`` grid points are sampled: ``num_points`` distinct rows and
``num_points`` distinct columns of the grid, zipped into (row, col) pairs; the same points are
read in both views (same geometry, different intensity). With M = B * num_points points, the
2M L2-normalised embeddings z_1 .. z_2M (first view, then second view) and s_ia = z_i . z_a:

    l_i = -log( exp(s_i,pos(i) / tau) / sum_{a != i} exp(s_ia / tau) )
    L   = 1/(2M) sum_i l_i

(Eq. 1 of the paper), where pos(i) is the same point in the other view, the only positive;
every other embedding, of both views and all images, is a negative (the SPCL setting; the
authors' own code uses negatives from the same image only, tau = 0.1). Closed form: all
embeddings identical give log(2M - 1). Computed in float32 with autocast disabled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sample_grid_points", "local_contrastive_loss"]


def sample_grid_points(batch_size: int, grid_size: int = 10, num_points: int = 5,
                       generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """(rows, cols), each (batch_size, num_points) long: per image ``num_points`` distinct rows
    and ``num_points`` distinct columns of a ``grid_size`` x ``grid_size`` grid, zipped.
    Drawn on the generator's device (CPU without one), then moved to ``device``."""
    for name, value in (("batch_size", batch_size), ("grid_size", grid_size), ("num_points", num_points)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if num_points > grid_size:
        raise ValueError(f"num_points={num_points} distinct rows/columns cannot be drawn from a grid of "
                         f"side grid_size={grid_size}; expected num_points <= grid_size")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    # a random permutation per image and axis: argsort of uniform noise
    noise = torch.rand((2, batch_size, grid_size), generator=generator, device=draw_device)
    picked = noise.argsort(dim=-1)[..., :num_points]
    if device is not None:
        picked = picked.to(device)
    return picked[0], picked[1]


def local_contrastive_loss(z1: Tensor, z2: Tensor, rows: Tensor, cols: Tensor,
                           temperature: float = 0.07) -> Tensor:
    """Eq. 1 over the points (rows, cols) of the embedding grids ``z1``, ``z2`` (B, D, gh, gw)
    of two views; a float32 scalar, the mean over all 2M anchors."""
    if z1.dim() != 4 or z1.shape != z2.shape:
        raise ValueError(f"expected two embedding grids of the same shape (B, D, gh, gw), got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    b, _, gh, gw = z1.shape
    if rows.shape != cols.shape or rows.dim() != 2 or rows.shape[0] != b or rows.shape[1] < 1:
        raise ValueError(f"rows and cols must both have shape ({b}, num_points) with num_points >= 1, got "
                         f"{tuple(rows.shape)} and {tuple(cols.shape)}")
    if rows.dtype.is_floating_point or cols.dtype.is_floating_point:
        raise ValueError(f"rows and cols must be integer indices, got dtypes {rows.dtype} and {cols.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    rows, cols = rows.to(z1.device), cols.to(z1.device)
    if rows.numel() and (rows.min() < 0 or rows.max() >= gh or cols.min() < 0 or cols.max() >= gw):
        raise ValueError(f"grid points out of range: rows in [{rows.min().item()}, {rows.max().item()}], "
                         f"cols in [{cols.min().item()}, {cols.max().item()}]; the grid is {gh} x {gw}")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        image = torch.arange(b, device=z1.device)[:, None].expand_as(rows)
        # (B, gh, gw, D)[image, row, col] -> (B, P, D), then all points of the first view, then the second
        points = [z.float().permute(0, 2, 3, 1)[image, rows, cols].reshape(-1, z.shape[1]) for z in (z1, z2)]
        emb = F.normalize(torch.cat(points), dim=1)                            # (2M, D)
        m = emb.shape[0] // 2
        logits = emb @ emb.t() / temperature
        self_pair = torch.eye(2 * m, dtype=torch.bool, device=emb.device)
        logits = logits.masked_fill(self_pair, float("-inf"))                 # a != i in the denominator
        positive = torch.arange(2 * m, device=emb.device).roll(m)             # i <-> i + M (mod 2M)
        return F.cross_entropy(logits, positive)
