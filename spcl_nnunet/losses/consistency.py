"""Unlabeled-image losses: transformation-consistent Mean Teacher loss and entropy minimisation.

Mean Teacher (supplementary Eq. 3), transformation-consistent: the student sees T(x), the
teacher sees x, and T is applied to the teacher's softmax before the comparison

    L_MT = 1/(|D_u| |Omega|) sum_x sum_i sum_c ( T(p^t(x))_ic - p^s(T(x))_ic )^2

over the pixels i that T maps inside the image (|Omega| counts those). T is a random geometric
transform per image: flips, 90-degree rotations and a small rotation + scaling, resampled with
nearest neighbours. Nearest-neighbour resampling makes T a pure re-indexing of pixels, so input
and output are transformed by exactly the same map: for a network that commutes with T (e.g.
pixel-wise), a teacher identical to the student gives L_MT = 0 for every T.

``FlipTransform`` is the T of the compared methods' views (discrete MI, local contrastive): per
image, flip H (the last-but-one axis) and/or W (the last axis), each with probability 0.8. A
flip is defined at any resolution (unlike ``GeometricTransform``, whose grid fixes H x W), so
the same T applies to images, features of every decoder scale and logits; flips keep
non-square patches and commute with pooling by 2 on even sizes.

Entropy minimisation (supplementary Eq. 4): L_ent = -1/(|D_u| |Omega|) sum_x sum_i sum_c p_ic log p_ic.

Both are computed in float32 from logits of any dtype (finite under float16 autocast).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GeometricTransform", "random_geometric_transform", "transformation_consistency_loss",
           "entropy_loss", "FlipTransform", "random_flips"]


@dataclass(frozen=True)
class GeometricTransform:
    """A per-image re-indexing of 2-D pixels: ``grid`` (B, H, W, 2) holds, for every output pixel,
    the normalised (x, y) input location it takes its value from (``grid_sample`` convention,
    ``align_corners=False``)."""

    grid: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """T(x) for x of shape (B, C, H, W); pixels that T maps from outside the image are 0."""
        if x.dim() != 4 or x.shape[0] != self.grid.shape[0] or tuple(x.shape[2:]) != tuple(self.grid.shape[1:3]):
            raise ValueError(f"transform made for images of shape {tuple(self.grid.shape[:3])} (B, H, W), "
                             f"got a tensor of shape {tuple(x.shape)}")
        out = F.grid_sample(x.float(), self.grid.to(x.device), mode="nearest", padding_mode="zeros",
                            align_corners=False)
        return out.to(x.dtype)

    def valid_mask(self) -> Tensor:
        """(B, 1, H, W) float mask: 1 where the output pixel comes from inside the input image."""
        b, h, w, _ = self.grid.shape
        ones = torch.ones((b, 1, h, w), dtype=torch.float32, device=self.grid.device)
        return F.grid_sample(ones, self.grid, mode="nearest", padding_mode="zeros", align_corners=False)


def random_geometric_transform(batch_size: int, spatial_shape: Sequence[int], device: torch.device | str = "cpu",
                               flips: bool = True, rot90: bool = True, max_rotation_deg: float = 15.0,
                               scale_range: tuple[float, float] = (0.9, 1.1),
                               generator: torch.Generator | None = None) -> GeometricTransform:
    """Random T per image: optional flips of each axis, a multiple of 90 degrees, a rotation in
    [-max_rotation_deg, max_rotation_deg] and a zoom in ``scale_range``, about the image centre,
    in pixel units (no stretching of non-square images)."""
    if len(spatial_shape) != 2:
        raise ValueError(f"geometric consistency transforms are 2-D, got spatial shape {tuple(spatial_shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if max_rotation_deg < 0:
        raise ValueError(f"max_rotation_deg must be >= 0, got {max_rotation_deg}")
    h, w = (int(s) for s in spatial_shape)

    def uniform(a: float, b: float) -> Tensor:
        return a + (b - a) * torch.rand(batch_size, generator=generator, dtype=torch.float64)

    def signs() -> Tensor:
        if not flips:
            return torch.ones(batch_size, dtype=torch.float64)
        return torch.randint(0, 2, (batch_size,), generator=generator).to(torch.float64) * 2 - 1

    quarter = torch.randint(0, 4, (batch_size,), generator=generator).to(torch.float64) if rot90 \
        else torch.zeros(batch_size, dtype=torch.float64)
    angle = quarter * (math.pi / 2) + uniform(-1.0, 1.0) * math.radians(max_rotation_deg)
    scale = uniform(lo, hi)
    fx, fy = signs(), signs()
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output pixel (u, v), centred and in pixels -> input location A (u, v): inverse zoom of a rotation of a flip
    a = torch.stack([torch.stack([cos * fx, -sin * fy], -1), torch.stack([sin * fx, cos * fy], -1)], -2) \
        / scale[:, None, None]                                                        # (B, 2, 2)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64) - (h - 1) / 2,
                          torch.arange(w, dtype=torch.float64) - (w - 1) / 2, indexing="ij")
    uv = torch.stack([u, v], -1).reshape(-1, 2)                                       # (H*W, 2)
    src = torch.einsum("bij,pj->bpi", a, uv).reshape(batch_size, h, w, 2)
    # snap to the nearest pixel centre in float64, so that the map is an exact re-indexing
    src = torch.round(src + torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64))
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1)
    return GeometricTransform(grid.to(torch.float32).to(device))


@dataclass(frozen=True)
class FlipTransform:
    """Per-image flips: ``flip_h`` / ``flip_w`` (B,) bool say whether image b is flipped along H
    (last-but-one axis) / W (last axis). Defined at any H, W; its own inverse. ``apply`` reads the
    flags on the host (keep them on the CPU, ``random_flips``' default, to avoid a device sync) and
    flips only the images that need it, runs of images with the same flips in one operation."""

    flip_h: Tensor
    flip_w: Tensor

    def __post_init__(self) -> None:
        for name, flags in (("flip_h", self.flip_h), ("flip_w", self.flip_w)):
            if not isinstance(flags, Tensor) or flags.dtype != torch.bool or flags.dim() != 1:
                shape = tuple(flags.shape) if isinstance(flags, Tensor) else type(flags).__name__
                dtype = flags.dtype if isinstance(flags, Tensor) else None
                raise ValueError(f"{name} must be a 1-D bool tensor (B,), got {shape} of dtype {dtype}")
        if self.flip_h.shape != self.flip_w.shape:
            raise ValueError(f"flip_h and flip_w differ in length: {self.flip_h.shape[0]} vs {self.flip_w.shape[0]}")

    def apply(self, x: Tensor) -> Tensor:
        """T(x) for x of shape (B, C, H, W), any H and W (same dtype and device as x; x itself
        when no image is flipped)."""
        if x.dim() != 4 or x.shape[0] != self.flip_h.shape[0]:
            raise ValueError(f"flips made for a batch of {self.flip_h.shape[0]} images (B, C, H, W), "
                             f"got a tensor of shape {tuple(x.shape)}")
        flags = list(zip(self.flip_h.tolist(), self.flip_w.tolist()))
        pieces, start = [], 0
        for end in range(1, len(flags) + 1):
            if end == len(flags) or flags[end] != flags[start]:
                dims = [dim for dim, flip in zip((-2, -1), flags[start]) if flip]
                pieces.append(x[start:end].flip(dims) if dims else x[start:end])
                start = end
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def random_flips(batch_size: int, probability: float = 0.8, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> FlipTransform:
    """Flip H and W of each image independently, each with ``probability`` (drawn on the
    generator's device, CPU without one, then moved to ``device``)."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must lie in [0, 1], got {probability}")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    flips = torch.rand((2, batch_size), generator=generator, device=draw_device) < probability
    if device is not None:
        flips = flips.to(device)
    return FlipTransform(flips[0], flips[1])


def transformation_consistency_loss(student_logits: Tensor, teacher_logits: Tensor,
                                    transform: GeometricTransform) -> Tensor:
    """L_MT between the student's logits on T(x) and the teacher's logits on x (no gradient
    through the teacher). Squared differences are summed over classes and averaged over the
    valid pixels of all images."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher outputs differ in shape: {tuple(student_logits.shape)} vs "
                         f"{tuple(teacher_logits.shape)}")
    p_student = torch.softmax(student_logits.float(), dim=1)
    p_teacher = transform.apply(torch.softmax(teacher_logits.detach().float(), dim=1))
    mask = transform.valid_mask().to(p_student.device)
    squared = ((p_student - p_teacher) ** 2).sum(dim=1, keepdim=True) * mask
    return squared.sum() / mask.sum().clamp_min(1.0)


def entropy_loss(logits: Tensor) -> Tensor:
    """Mean pixel entropy of softmax(logits) over dim 1, in nats (0 for one-hot, log C for uniform)."""
    if logits.dim() < 2:
        raise ValueError(f"expected logits of shape (B, C, ...), got {tuple(logits.shape)}")
    log_p = torch.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    plogp = torch.where(p > 0, p * log_p, torch.zeros_like(p))   # 0 log 0 = 0 (logits of -inf)
    return -plogp.sum(dim=1).mean()
