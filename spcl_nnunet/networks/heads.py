"""Heads on top of U-Net features for the pre-training and regularisation losses.

- ``ProjectionHead``: g on the encoder bottleneck for (self-paced) contrastive training.
- ``ClusterHeads`` / ``DenseClusterHeads``: the IIC cluster heads of the discrete-MI
  regulariser (global average pool -> Linear -> softmax; 1x1 conv -> per-pixel softmax), several
  sub-heads of K clusters each.
- ``DenseProjectionHead``: the dense projector of Chaitanya et al.'s local contrastive loss,
  1x1 conv -> LeakyReLU(0.01) -> 1x1 conv -> AdaptiveAvgPool2d(g) -> L2-normalise channels.

Softmax and normalisation outputs are float32, computed with autocast disabled (the IIC eps of
1e-10 is 0 in float16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ProjectionHead", "ClusterHeads", "DenseClusterHeads", "DenseProjectionHead"]


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_input(x: Tensor, in_channels: int, dims: tuple[int, ...], expected: str) -> None:
    if x.dim() not in dims:
        raise ValueError(f"expected input of shape {expected}, got {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"channel mismatch: input has {x.shape[1]} channels, head expects {in_channels}")


class ProjectionHead(nn.Module):
    """g(x) = Linear(hidden, out)(LeakyReLU(Linear(C, hidden)(GAP(x)))).

    Input (B, C, *spatial) with 2-D or 3-D spatial dims; output (B, out_dim), not normalised
    (the contrastive loss L2-normalises).
    """

    def __init__(self, in_channels: int, hidden_dim: int = 256, out_dim: int = 256) -> None:
        super().__init__()
        sizes = {"in_channels": in_channels, "hidden_dim": hidden_dim, "out_dim": out_dim}
        for name, value in sizes.items():
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_dim),
            nn.LeakyReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Global average pool over spatial dims, then the two-layer MLP."""
        if x.dim() not in (4, 5):
            raise ValueError(
                f"expected input of shape (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"channel mismatch: input has {x.shape[1]} channels, "
                f"head expects {self.in_channels}"
            )
        pooled = x.flatten(2).mean(dim=-1)
        return self.mlp(pooled)


class _SubHeads(nn.Module):
    """``num_heads`` sub-heads of ``num_clusters`` outputs computed by one layer (the subclass's):
    its ``heads * K`` output channels are split into heads and soft-maxed over K in float32."""

    def __init__(self, in_channels: int, num_clusters: int, num_heads: int) -> None:
        super().__init__()
        _check_sizes(in_channels=in_channels, num_clusters=num_clusters, num_heads=num_heads)
        self.in_channels = in_channels
        self.num_clusters = num_clusters
        self.num_heads = num_heads

    def _probabilities(self, logits: Tensor, device_type: str) -> Tensor:
        logits = logits.unflatten(1, (self.num_heads, self.num_clusters))
        with torch.autocast(device_type=device_type, enabled=False):
            return torch.softmax(logits.float(), dim=2)


class ClusterHeads(_SubHeads):
    """``num_heads`` IIC sub-heads on a feature map: GAP -> Linear(C, K) -> softmax.

    The sub-heads are one Linear(C, heads * K) whose output is split into heads of K (each
    sub-head's weights initialised and trained as its own Linear(C, K) would be). Input
    (B, C, *spatial) with 2-D or 3-D spatial dims; output float32 (B, heads, K) probabilities
    (softmax over K in float32, autocast disabled).
    """

    def __init__(self, in_channels: int, num_clusters: int = 20, num_heads: int = 5) -> None:
        super().__init__(in_channels, num_clusters, num_heads)
        self.linear = nn.Linear(in_channels, num_heads * num_clusters)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, (4, 5), "(B, C, H, W) or (B, C, D, H, W)")
        return self._probabilities(self.linear(x.flatten(2).mean(dim=-1)), x.device.type)


class DenseClusterHeads(_SubHeads):
    """``num_heads`` dense IIC sub-heads: Conv2d(C, K, 1) -> softmax over channels per pixel.

    The sub-heads are one Conv2d(C, heads * K, 1) split into heads of K (one convolution instead
    of one per sub-head). Input (B, C, H, W); output float32 (B, heads, K, H, W) probability maps.
    """

    def __init__(self, in_channels: int, num_clusters: int = 20, num_heads: int = 5) -> None:
        super().__init__(in_channels, num_clusters, num_heads)
        self.conv = nn.Conv2d(in_channels, num_heads * num_clusters, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, (4,), "(B, C, H, W)")
        return self._probabilities(self.conv(x), x.device.type)


class DenseProjectionHead(nn.Module):
    """Dense projector of the local contrastive loss: Conv2d(C, hidden, 1) -> LeakyReLU(0.01)
    -> Conv2d(hidden, out, 1) -> AdaptiveAvgPool2d(grid_size) -> L2-normalise over channels.

    Input (B, C, H, W); output float32 (B, out_dim, grid_size, grid_size), unit norm over
    channels at every grid cell.
    """

    def __init__(self, in_channels: int, hidden_dim: int = 256, out_dim: int = 256, grid_size: int = 10) -> None:
        super().__init__()
        _check_sizes(in_channels=in_channels, hidden_dim=hidden_dim, out_dim=out_dim, grid_size=grid_size)
        self.in_channels = in_channels
        self.grid_size = grid_size
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden_dim, 1),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(hidden_dim, out_dim, 1),
            nn.AdaptiveAvgPool2d(grid_size),
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, (4,), "(B, C, H, W)")
        z = self.net(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.normalize(z.float(), dim=1)
