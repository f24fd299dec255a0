"""MixUp on labeled pairs (Zhang et al. 2018), as the SPCL comparison uses it ("following [3]").

For a labeled batch X with one-hot targets Y, one lambda ~ Beta(alpha, alpha) per batch and a
random permutation pi of the batch:

    X~ = lambda X + (1 - lambda) X[pi],    Y~ = lambda Y + (1 - lambda) Y[pi]
    L_mix = 1/|Omega| sum_pixels KL(Y~ || softmax f(X~)) = sum_c Y~_c (log Y~_c - log p_c)

averaged over the valid pixels (with 0 log 0 = 0); it has the gradient of the soft-target
cross-entropy and, for a one-hot target (lambda = 1 or pi = identity), equals the plain pixel
cross-entropy. Ignore-label pixels have an all-zero one-hot row and mask 0; after mixing, a
pixel counts if it is valid in both images (mask * mask[pi]). Unlabeled data are not used.
(DCL's helper instead draws lambda ~ Beta(0.1, 0.1) per sample and pairs with replacement.)

The KL is computed in float32 with autocast disabled (its logs underflow in float16).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["one_hot_target", "sample_mixing", "sample_rows", "mix", "mix_mask", "soft_target_loss"]


def one_hot_target(target: Tensor, num_classes: int,
                   ignore_label: int | None = None) -> tuple[Tensor, Tensor]:
    """(one-hot float32 (B, C, H, W), valid mask float32 (B, 1, H, W)) of an integer-valued
    ``target`` of shape (B, 1, H, W) or (B, H, W) (a float tensor holding integers is accepted,
    as nnU-Net's targets are). Ignore-label pixels get an all-zero row and mask 0."""
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if target.dim() == 4:
        if target.shape[1] != 1:
            raise ValueError(f"expected a target of shape (B, 1, H, W) or (B, H, W), got {tuple(target.shape)}")
        target = target[:, 0]
    elif target.dim() != 3:
        raise ValueError(f"expected a target of shape (B, 1, H, W) or (B, H, W), got {tuple(target.shape)}")
    if target.dtype.is_floating_point:
        not_integer = target != torch.round(target)
        if bool(not_integer.any()):
            raise ValueError(f"target holds non-integer label {target[not_integer][0].item()}; expected class "
                             f"indices in [0, {num_classes})")
    labels = target.long()
    valid = labels != ignore_label if ignore_label is not None else torch.ones_like(labels, dtype=torch.bool)
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = sorted(set(labels[bad].unique()[:5].tolist()))
        raise ValueError(f"target holds label(s) {values} outside [0, {num_classes}) that are not the ignore label "
                         f"({ignore_label})")
    index = torch.where(valid, labels, torch.zeros_like(labels)).unsqueeze(1)
    mask = valid.unsqueeze(1).to(torch.float32)
    one_hot = torch.zeros((labels.shape[0], num_classes, *labels.shape[1:]), dtype=torch.float32,
                          device=labels.device)
    one_hot = one_hot.scatter(1, index, 1.0) * mask
    return one_hot, mask


def _log_standard_gamma(shape: float, generator: torch.Generator | None, device: torch.device) -> float:
    """log of one Gamma(shape, 1) draw from ``generator`` (Marsaglia & Tsang 2000; for shape < 1,
    Gamma(shape) = Gamma(shape + 1) * U^(1/shape), kept in log space so it never underflows)."""
    def draw(kind: str) -> float:
        fn = torch.randn if kind == "normal" else torch.rand
        return float(fn(1, generator=generator, device=device, dtype=torch.float64).item())

    boost = 0.0
    if shape < 1:
        u = draw("uniform")
        boost = math.log(max(u, 1e-300)) / shape
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = draw("normal")
        v = 1.0 + c * x
        if v <= 0:
            continue
        v = v ** 3
        u = draw("uniform")
        if u > 0 and math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
            return math.log(d * v) + boost


def sample_mixing(batch_size: int, alpha: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[float, Tensor]:
    """(lambda ~ Beta(alpha, alpha), a random permutation of range(batch_size) (long, on the
    generator's device)): one lambda per batch, drawn with torch from ``generator`` (as
    G1 / (G1 + G2) of two Gamma(alpha) draws) so that a seeded generator reproduces it."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    device = generator.device if generator is not None else torch.device("cpu")
    log_g1 = _log_standard_gamma(float(alpha), generator, device)
    log_g2 = _log_standard_gamma(float(alpha), generator, device)
    lam = 1.0 / (1.0 + math.exp(min(log_g2 - log_g1, 700.0)))        # G1 / (G1 + G2), overflow-safe
    perm = torch.randperm(batch_size, generator=generator, device=device)
    return lam, perm


def _check_perm(x: Tensor, perm: Tensor) -> Tensor:
    if perm.dim() != 1 or perm.shape[0] != x.shape[0] or perm.dtype.is_floating_point:
        raise ValueError(f"perm must be a 1-D integer permutation of the batch ({x.shape[0]},), got shape "
                         f"{tuple(perm.shape)} and dtype {perm.dtype}")
    return perm.to(x.device)


def _check_rows(x: Tensor, rows: Tensor | None) -> Tensor | None:
    if rows is None:
        return None
    if rows.dim() != 1 or rows.dtype.is_floating_point or rows.numel() == 0:
        raise ValueError(f"rows must be a non-empty 1-D integer index into the batch, got shape {tuple(rows.shape)} "
                         f"and dtype {rows.dtype}")
    return rows.to(x.device)


def mix(x: Tensor, lam: float, perm: Tensor, rows: Tensor | None = None) -> Tensor:
    """lam * x + (1 - lam) * x[perm] along the batch dim (images and one-hot targets alike);
    with ``rows``, only those mixed images: ``mix(x, lam, perm)[rows]`` without mixing the others."""
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    perm = _check_perm(x, perm)
    rows = _check_rows(x, rows)
    if rows is None:
        return lam * x + (1.0 - lam) * x[perm]
    return lam * x[rows] + (1.0 - lam) * x[perm[rows]]


def mix_mask(mask: Tensor, perm: Tensor, rows: Tensor | None = None) -> Tensor:
    """mask * mask[perm]: a mixed pixel is valid where it is valid in both source images (with
    ``rows``, only those mixed images)."""
    perm = _check_perm(mask, perm)
    rows = _check_rows(mask, rows)
    if rows is None:
        return mask * mask[perm]
    return mask[rows] * mask[perm[rows]]


def sample_rows(batch_size: int, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """A random subset of ``max(1, round(fraction * batch_size))`` of the batch's rows (sorted,
    long, on the generator's device). Averaging a per-pixel loss over a random subset of the mixed
    images estimates the average over all of them without bias, at a fraction of the cost."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    device = generator.device if generator is not None else torch.device("cpu")
    k = max(1, round(fraction * batch_size))
    return torch.randperm(batch_size, generator=generator, device=device)[:k].sort().values


def soft_target_loss(logits: Tensor, soft_targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(soft_targets || softmax(logits)) over dim 1 (classes), averaged over the pixels where
    ``mask`` (B, 1, *spatial) is non-zero (all pixels without a mask); a float32 scalar, 0 if no
    pixel is valid."""
    if logits.dim() < 2 or logits.shape != soft_targets.shape:
        raise ValueError(f"logits and soft targets must both have shape (B, C, ...), got {tuple(logits.shape)} and "
                         f"{tuple(soft_targets.shape)}")
    expected_mask = (logits.shape[0], 1, *logits.shape[2:])
    if mask is not None and tuple(mask.shape) != expected_mask:
        raise ValueError(f"mask must have shape {expected_mask} (B, 1, *spatial), got {tuple(mask.shape)}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_p = torch.log_softmax(logits.float(), dim=1)
        t = soft_targets.float()
        cross = torch.where(t > 0, t * log_p, torch.zeros_like(log_p))   # 0 log 0 = 0, even for -inf logits
        kl = (torch.xlogy(t, t) - cross).sum(dim=1, keepdim=True)          # (B, 1, *spatial)
        if mask is None:
            return kl.mean()
        m = mask.float()
        return (kl * m).sum() / m.sum().clamp_min(1.0)
