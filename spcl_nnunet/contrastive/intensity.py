"""Random intensity changes that keep the geometry: two views of the same pixels.

The local contrastive loss (Chaitanya et al.) and the discrete-MI views compare the same
locations in two views, so the views differ in intensity only. On nnU-Net's normalised images
(z-scored per image or per dataset) each image gets its own

    y = b * ((x - mean(x)) * c + mean(x)) + n,   c ~ U(contrast), b ~ U(brightness), n ~ N(0, s^2), s ~ U(0, noise)

(contrast about the image mean, multiplicative brightness, Gaussian noise).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["random_intensity_view"]


def random_intensity_view(x: Tensor, contrast: tuple[float, float] = (0.75, 1.25),
                          brightness: tuple[float, float] = (0.75, 1.25), noise: float = 0.1,
                          generator: torch.Generator | None = None) -> Tensor:
    """A random intensity change of every image of ``x`` (B, C, *spatial); the pixels stay where they are."""
    for name, (lo, hi) in (("contrast", contrast), ("brightness", brightness)):
        if not 0 < lo <= hi:
            raise ValueError(f"{name} range must satisfy 0 < low <= high, got {(lo, hi)}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if x.dim() < 3:
        raise ValueError(f"expected images of shape (B, C, *spatial), got {tuple(x.shape)}")
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    where = x.device if generator is None else generator.device      # draw where the generator lives

    def uniform(lo: float, hi: float) -> Tensor:
        return (lo + (hi - lo) * torch.rand(shape, generator=generator, device=where)).to(x.device, torch.float32)

    xf = x.float()
    mean = xf.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    y = uniform(*brightness) * ((xf - mean) * uniform(*contrast) + mean)
    if noise > 0:
        sigma = uniform(0.0, noise)
        y = y + sigma * torch.randn(x.shape, generator=generator, device=where).to(x.device)
    return y.to(x.dtype)
