"""Patch discriminator for adversarial semi-supervised segmentation (Zhang et al. 2017, DAN).

DCGAN-style: stride-2 blocks Conv2d(k=4, s=2, p=1) with 64 -> 128 -> 256 -> 512 channels
(``base_channels`` x 1, 2, 4, 8, capped at x 8), LeakyReLU(0.2), BatchNorm after every block but
the first; then Conv2d(c, 1, k=3, s=1, p=1) giving one logit per patch, (B, 1, h, w). Input:
softmax maps of the segmenter, optionally with the image concatenated (the caller decides
``in_channels``). Initialisation as DCGAN: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02),
biases 0. BatchNorm normalises with the batch's statistics only (no running statistics): the
discriminator is only ever used in training, and under DDP every GPU's copy stays identical (its
parameters move by averaged gradients; running statistics would drift apart per GPU).

The reference DCGAN discriminator ends with a 4x4 valid convolution and fails on inputs under
64 px. This one adapts its depth to nnU-Net's patch size instead: a stride-2 block maps a side n
to floor(n / 2), and the number of blocks is min(max_downsamplings, the most that keep the
smallest patch side >= 2 px after them), so it works e.g. at 20x20 (3 blocks, 2x2 logits),
64x48 (4 blocks, 4x3) and 256x224 (4 blocks, 16x14). Keeping >= 2x2 outputs also keeps
BatchNorm defined at batch size 1. A patch side under 4 px (no block possible) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """DCGAN-style patch discriminator for 2-D inputs of shape (B, in_channels, *patch_size).

    Attributes: ``num_downsamplings`` (stride-2 blocks used), ``patch_size`` and
    ``output_size`` (the (h, w) of the logit map).
    """

    def __init__(self, in_channels: int, patch_size: Sequence[int], base_channels: int = 64,
                 max_downsamplings: int = 4) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels),
                            ("max_downsamplings", max_downsamplings)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        patch = tuple(int(s) for s in patch_size)
        if len(patch) != 2:
            raise ValueError(f"PatchDiscriminator is 2-D: expected a patch size (H, W), got {tuple(patch_size)}")
        smallest = min(patch)
        if smallest < 4:
            raise ValueError(f"patch size {patch} has a side of {smallest} px; PatchDiscriminator supports "
                             f"patch sides of at least 4 px")
        depth = 0
        while depth < max_downsamplings and smallest // 2 ** (depth + 1) >= 2:
            depth += 1
        self.in_channels = in_channels
        self.patch_size = patch
        self.num_downsamplings = depth
        self.output_size = tuple(s // 2 ** depth for s in patch)

        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(depth):
            out = base_channels * 2 ** min(block, 3)
            layers.append(nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1, bias=block == 0))
            if block > 0:
                layers.append(nn.BatchNorm2d(out, track_running_stats=False))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels = out
        layers.append(nn.Conv2d(channels, 1, kernel_size=3, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Patch logits (B, 1, *output_size) for x of shape (B, in_channels, *patch_size)."""
        if x.dim() != 4:
            raise ValueError(f"expected input of shape (B, {self.in_channels}, {self.patch_size[0]}, "
                             f"{self.patch_size[1]}), got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"channel mismatch: input has {x.shape[1]} channels, discriminator expects "
                             f"{self.in_channels}")
        if tuple(x.shape[2:]) != self.patch_size:
            raise ValueError(f"spatial mismatch: input is {tuple(x.shape[2:])}, discriminator was built for "
                             f"patch size {self.patch_size}")
        return self.net(x)
