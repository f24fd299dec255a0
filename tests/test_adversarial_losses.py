"""Adversarial training losses on patch logits (spcl_nnunet.losses.adversarial)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spcl_nnunet.losses.adversarial import adversarial_loss, discriminator_accuracy, discriminator_loss


def test_d_of_one_half_gives_2_ln_2_and_ln_2() -> None:
    real, fake = torch.zeros(2, 1, 4, 3), torch.zeros(2, 1, 5, 5)
    assert discriminator_loss(real, fake).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert adversarial_loss(fake).item() == pytest.approx(math.log(2), rel=1e-6)


def test_values_match_bce_on_probabilities_and_directions() -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 2, 2, generator=g)
    expected = F.binary_cross_entropy(torch.sigmoid(real), torch.ones_like(real)) + \
        F.binary_cross_entropy(torch.sigmoid(fake), torch.zeros_like(fake))
    torch.testing.assert_close(discriminator_loss(real, fake), expected)
    torch.testing.assert_close(adversarial_loss(fake), F.binary_cross_entropy(torch.sigmoid(fake),
                                                                             torch.ones_like(fake)))
    # a D that is right has a small loss, the segmenter fooling it a small adversarial term
    assert discriminator_loss(torch.full((2, 1), 10.0), torch.full((2, 1), -10.0)).item() < 1e-3
    assert discriminator_loss(torch.full((2, 1), -10.0), torch.full((2, 1), 10.0)).item() > 10
    assert adversarial_loss(torch.full((2, 1), 10.0)).item() < 1e-3 < adversarial_loss(torch.zeros(2, 1)).item()


def test_accuracy() -> None:
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)
    assert discriminator_accuracy(real, fake).item() == 1.0
    assert discriminator_accuracy(fake, real).item() == 0.0
    assert discriminator_accuracy(real, real).item() == 0.5          # calls everything real
    assert discriminator_accuracy(fake, fake).item() == 0.5          # calls everything fake
    assert discriminator_accuracy(torch.zeros(4), torch.zeros(4)).item() == 0.0   # ties count as wrong
    # the two sets weigh equally whatever their sizes: 1 of 1 real right, 1 of 4 fake right
    assert discriminator_accuracy(torch.ones(1), torch.tensor([-1.0, 1.0, 1.0, 1.0])).item() == pytest.approx(0.625)
    w = torch.zeros(3, requires_grad=True)
    assert not discriminator_accuracy(w + 1, w - 1).requires_grad
    with pytest.raises(ValueError, match="at least one"):
        discriminator_accuracy(torch.zeros(0), fake)


def test_finite_under_low_precision() -> None:
    g = torch.Generator().manual_seed(1)
    real = (torch.randn(2, 1, 4, 4, generator=g) * 6e4).clamp(-6e4, 6e4).half().requires_grad_()
    fake = (torch.randn(2, 1, 4, 4, generator=g) * 6e4).clamp(-6e4, 6e4).half().requires_grad_()
    for value in (discriminator_loss(real, fake), adversarial_loss(fake)):
        assert value.dtype == torch.float32 and torch.isfinite(value)
    (discriminator_loss(real, fake) + adversarial_loss(fake)).backward()
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
    conv = torch.nn.Conv2d(3, 1, 3, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r, f = conv(torch.randn(2, 3, 8, 8)), conv(torch.randn(2, 3, 8, 8))
        assert r.dtype == torch.bfloat16
        d_loss, adv = discriminator_loss(r, f), adversarial_loss(f)
        acc = discriminator_accuracy(r, f)
    for value in (d_loss, adv, acc):
        assert value.dtype == torch.float32 and torch.isfinite(value)
    (d_loss + adv).backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())
