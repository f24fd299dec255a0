"""FixMatch-style pseudo-label loss for segmentation (Sohn et al. 2020; UniMatch's CutMix views).

The weak view x (an unlabeled slice after nnU-Net's augmentation) gives class probabilities p
(an EMA teacher's, or the student's own without gradient); each pixel i gets the pseudo-label
y_i = argmax_c p_ic and the confidence q_i = max_c p_ic. The strong view is

    S(x) = I(B(T(x)))

T a random geometric re-indexing of the pixels (``GeometricTransform``), B CutMix boxes pasted
from other images of the batch (``CutMixBoxes``), I pixel-wise intensity perturbations. T and B
move y, q and the in-image mask exactly as they move x, so pixel i's pseudo-label lands on the
pixel of S(x) that shows the same anatomy (``StrongView.move``). The loss is

    L_u = 1/|Omega| sum_i 1[q_i >= tau] CE(p^s(S(x))_i, y_i)

averaged over the pixels Omega of S(x) that come from inside an image: like FixMatch's mean over
every unlabeled pixel, a pixel below the threshold tau adds 0 and still counts in |Omega|.

Class-balanced (issue #30's length arm L5): with K the kept pixels (q_i >= tau, in Omega), K_c those
of pseudo-label c and P the classes with K_c non-empty,

    L_u^bal = |K|/|Omega| * 1/|P| sum_{c in P} 1/|K_c| sum_{i in K_c} CE(p^s(S(x))_i, c)

the same total weight |K|/|Omega| as L_u, shared equally among the classes present instead of among
the pixels (L_u^bal = L_u when every kept pixel has one class).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from spcl_nnunet.losses.consistency import GeometricTransform

__all__ = ["pseudo_labels", "CutMixBoxes", "random_cutmix_boxes", "StrongView", "confidence_masked_cross_entropy"]


def pseudo_labels(probabilities: Tensor) -> tuple[Tensor, Tensor]:
    """(labels, confidence), each (B, 1, H, W): argmax and max of ``probabilities`` (B, C, H, W) over C."""
    if probabilities.dim() != 4:
        raise ValueError(f"expected probabilities of shape (B, C, H, W), got {tuple(probabilities.shape)}")
    confidence, labels = probabilities.detach().float().max(dim=1, keepdim=True)
    return labels, confidence


@dataclass(frozen=True)
class CutMixBoxes:
    """Per image b: the box ``boxes[b] = (y0, y1, x0, x1)`` (end-exclusive; empty when y0 == y1)
    is replaced by the same box of image ``source[b]``. Defined for any tensor (B, C, H, W) of
    the spatial size the boxes were drawn for."""

    source: Tensor   # (B,) long, on the CPU
    boxes: Tensor    # (B, 4) long, on the CPU

    def apply(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[0] != self.source.shape[0]:
            raise ValueError(f"boxes made for a batch of {self.source.shape[0]} images (B, C, H, W), "
                             f"got a tensor of shape {tuple(x.shape)}")
        out = x.clone()
        for b, (src, (y0, y1, x0, x1)) in enumerate(zip(self.source.tolist(), self.boxes.tolist())):
            if y1 > y0 and x1 > x0 and src != b:
                out[b, :, y0:y1, x0:x1] = x[src, :, y0:y1, x0:x1]
        return out


def random_cutmix_boxes(batch_size: int, spatial_shape: Sequence[int], probability: float = 0.5,
                        area_range: tuple[float, float] = (0.02, 0.4), aspect_range: tuple[float, float] = (0.3, 1 / 0.3),
                        generator: torch.Generator | None = None) -> CutMixBoxes:
    """With ``probability`` per image, a box of area ``area_range`` (fraction of the image) and aspect
    ratio ``aspect_range`` at a uniform position, pasted from another image of the batch (a random
    permutation; an image drawn as its own source is left as it is)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must lie in [0, 1], got {probability}")
    if not 0 < area_range[0] <= area_range[1] <= 1:
        raise ValueError(f"area_range must satisfy 0 < low <= high <= 1, got {area_range}")
    h, w = (int(s) for s in spatial_shape)
    source = torch.randperm(batch_size, generator=generator)
    boxes = torch.zeros((batch_size, 4), dtype=torch.long)
    draws = torch.rand((batch_size, 5), generator=generator, dtype=torch.float64)
    for b in range(batch_size):
        use, area_u, aspect_u, y_u, x_u = draws[b].tolist()
        if use >= probability:
            continue
        area = (area_range[0] + (area_range[1] - area_range[0]) * area_u) * h * w
        aspect = math.exp(math.log(aspect_range[0]) + (math.log(aspect_range[1]) - math.log(aspect_range[0])) * aspect_u)
        bh = min(h, max(1, round(math.sqrt(area * aspect))))
        bw = min(w, max(1, round(math.sqrt(area / aspect))))
        y0 = int(y_u * (h - bh + 1))
        x0 = int(x_u * (w - bw + 1))
        boxes[b] = torch.tensor([y0, y0 + bh, x0, x0 + bw])
    return CutMixBoxes(source, boxes)


@dataclass(frozen=True)
class StrongView:
    """The geometric part of S: T, then the CutMix boxes B. ``move`` takes any per-pixel map of the
    weak view (pseudo-labels, confidence) to the strong view's pixels; ``image`` also applies the
    pixel-wise intensity perturbation I."""

    transform: GeometricTransform
    boxes: CutMixBoxes

    def move(self, x: Tensor) -> Tensor:
        return self.boxes.apply(self.transform.apply(x))

    def valid_mask(self) -> Tensor:
        """(B, 1, H, W): 1 where the strong view's pixel comes from inside an image."""
        return self.boxes.apply(self.transform.valid_mask())

    def image(self, x: Tensor, intensity: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        moved = self.move(x)
        return moved if intensity is None else intensity(moved)


def confidence_masked_cross_entropy(student_logits: Tensor, labels: Tensor, confidence: Tensor, valid: Tensor,
                                    threshold: float, class_balanced: bool = False) -> tuple[Tensor, Tensor]:
    """(L_u, or L_u^bal with ``class_balanced``; share of the valid pixels above the threshold).
    ``labels``, ``confidence`` and ``valid`` are (B, 1, H, W) maps on the student's pixels; the loss is
    computed in float32."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the confidence threshold must lie in [0, 1], got {threshold}")
    if labels.shape != confidence.shape or labels.shape != valid.shape or \
            labels.shape[0] != student_logits.shape[0] or labels.shape[2:] != student_logits.shape[2:]:
        raise ValueError(f"pseudo-label maps {tuple(labels.shape)}, confidence {tuple(confidence.shape)} and "
                         f"mask {tuple(valid.shape)} must be (B, 1, H, W) of logits {tuple(student_logits.shape)}")
    valid = valid.float()
    kept = (confidence >= threshold).float() * valid
    ce = F.cross_entropy(student_logits.float(), labels[:, 0].long(), reduction="none")[:, None]
    pixels = valid.sum().clamp_min(1.0)
    kept_share = (kept.sum() / pixels).detach()
    if not class_balanced:
        return (ce * kept).sum() / pixels, kept_share
    classes = labels.long().flatten()
    weights = kept.flatten()
    sums = torch.zeros(student_logits.shape[1], device=ce.device).index_add(0, classes, ce.flatten() * weights)
    counts = torch.zeros_like(sums).index_add(0, classes, weights)
    present = counts > 0
    if not present.any():
        return (ce * kept).sum() / pixels, kept_share     # nothing kept: 0, with the graph
    return kept_share * (sums[present] / counts[present]).mean(), kept_share
