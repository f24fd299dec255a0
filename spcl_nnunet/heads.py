"""Projection head g used on top of the encoder bottleneck for contrastive training."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ProjectionHead"]


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
