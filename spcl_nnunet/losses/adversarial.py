"""Adversarial training losses (Zhang et al. 2017, DAN) on a patch discriminator's logits.

D outputs one logit per patch; "real" are predictions on labeled images, "fake" those on
unlabeled images (not ground truth):

    L_D   = BCE(D(s_l), 1) + BCE(D(s_u), 0)     (each term a mean over its patch outputs)
    L_adv = BCE(D(s_u), 1)                     (the segmenter's term on unlabeled predictions)

with BCE(z, y) = -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)) computed from logits
(``binary_cross_entropy_with_logits``, stable, and allowed under CUDA autocast where BCELoss on
probabilities is refused), in float32 with autocast disabled. D = 0.5 everywhere (logits 0)
gives L_D = 2 ln 2 and L_adv = ln 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["discriminator_loss", "adversarial_loss", "discriminator_accuracy"]


def _bce(logits: Tensor, target: float) -> Tensor:
    if logits.numel() == 0:
        raise ValueError(f"expected at least one discriminator output, got shape {tuple(logits.shape)}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        z = logits.float()
        return F.binary_cross_entropy_with_logits(z, torch.full_like(z, target))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """L_D = BCE(real, 1) + BCE(fake, 0), each averaged over its patch outputs (float32)."""
    return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)


def adversarial_loss(fake_logits: Tensor) -> Tensor:
    """L_adv = BCE(fake, 1): the segmenter tries to make D call its unlabeled predictions real."""
    return _bce(fake_logits, 1.0)


@torch.no_grad()
def discriminator_accuracy(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Fraction of patch outputs D classifies right (real > 0, fake < 0; a logit of exactly 0
    counts as wrong), averaged over the real and the fake set with equal weight (float32)."""
    if real_logits.numel() == 0 or fake_logits.numel() == 0:
        raise ValueError(f"expected at least one discriminator output per set, got shapes "
                         f"{tuple(real_logits.shape)} and {tuple(fake_logits.shape)}")
    real_right = (real_logits > 0).float().mean()
    fake_right = (fake_logits < 0).float().mean()
    return (real_right + fake_right.to(real_right.device)) / 2
