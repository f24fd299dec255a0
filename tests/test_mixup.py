"""MixUp on labeled pairs (spcl_nnunet.losses.mixup)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spcl_nnunet.losses.mixup import mix, mix_mask, one_hot_target, sample_mixing, soft_target_loss


def _batch(seed: int = 0, b: int = 4, c: int = 3, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, size, size, generator=g) * 3
    target = torch.randint(0, c, (b, 1, size, size), generator=g).float()    # nnU-Net: float holding ints
    return logits, target


def test_one_hot_target_and_ignore_label() -> None:
    target = torch.tensor([[[[0.0, 2.0], [1.0, 5.0]]]])                       # 5 = ignore label
    one_hot, mask = one_hot_target(target, 3, ignore_label=5)
    assert one_hot.dtype == mask.dtype == torch.float32
    assert one_hot.shape == (1, 3, 2, 2) and mask.shape == (1, 1, 2, 2)
    assert one_hot[0, :, 0, 0].tolist() == [1, 0, 0] and one_hot[0, :, 0, 1].tolist() == [0, 0, 1]
    assert one_hot[0, :, 1, 1].tolist() == [0, 0, 0] and mask.flatten().tolist() == [1, 1, 1, 0]
    same, _ = one_hot_target(target[:, 0].long(), 3, ignore_label=5)          # (B, H, W) integer input
    assert torch.equal(same, one_hot)
    with pytest.raises(ValueError, match=r"\[5\]"):
        one_hot_target(target, 3)                                             # 5 is not ignored here
    with pytest.raises(ValueError, match=r"\[-1\]"):
        one_hot_target(torch.tensor([[[-1, 0]]]), 3, ignore_label=5)
    with pytest.raises(ValueError, match="non-integer label 0.5"):
        one_hot_target(torch.tensor([[[0.5, 0.0]]]), 3)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        one_hot_target(torch.zeros(1, 2, 3, 3), 3)


def test_lambda_one_or_identity_permutation_equals_cross_entropy() -> None:
    logits, target = _batch()
    one_hot, mask = one_hot_target(target, 3)
    ce = F.cross_entropy(logits, one_hot.argmax(1))
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(soft_target_loss(logits, mix(one_hot, 1.0, perm), mix_mask(mask, perm)), ce)
    torch.testing.assert_close(soft_target_loss(logits, mix(one_hot, 1.0, perm)), ce)
    identity = torch.arange(4)
    for lam in (0.0, 0.3, 0.77):
        torch.testing.assert_close(soft_target_loss(logits, mix(one_hot, lam, identity), mask), ce)
    # a real mix is not plain CE against either image's labels
    mixed_loss = soft_target_loss(logits, mix(one_hot, 0.5, perm), mix_mask(mask, perm))
    assert not torch.allclose(mixed_loss, ce)
    assert not torch.allclose(mixed_loss, F.cross_entropy(logits, one_hot[perm].argmax(1)))


def test_soft_target_loss_is_kl_and_has_the_soft_ce_gradient() -> None:
    logits, _ = _batch(1)
    g = torch.Generator().manual_seed(1)
    soft = torch.softmax(torch.randn(logits.shape, generator=g), dim=1)
    kl = soft_target_loss(logits, soft)
    expected = (soft * (soft.log() - torch.log_softmax(logits, 1))).sum(1).mean()
    torch.testing.assert_close(kl, expected)
    assert soft_target_loss(soft.log(), soft).item() == pytest.approx(0.0, abs=1e-6)   # KL(p || p) = 0
    a = logits.clone().requires_grad_()
    soft_target_loss(a, soft).backward()
    b = logits.clone().requires_grad_()
    (-(soft * torch.log_softmax(b, 1)).sum(1).mean()).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_mixed_targets_sum_to_one_on_valid_pixels_and_images_mix_linearly() -> None:
    _, target = _batch(2)
    target[0, 0, :2] = 255.0
    one_hot, mask = one_hot_target(target, 3, ignore_label=255)
    lam, perm = sample_mixing(4, generator=torch.Generator().manual_seed(3))
    mixed, mixed_mask = mix(one_hot, lam, perm), mix_mask(mask, perm)
    sums = mixed.sum(1, keepdim=True)
    valid = mixed_mask.bool()
    assert valid.any() and not valid.all()
    torch.testing.assert_close(sums[valid], torch.ones_like(sums[valid]))
    assert torch.equal(mixed_mask, mask * mask[perm])
    x = torch.randn(4, 1, 6, 6)
    torch.testing.assert_close(mix(x, lam, perm), lam * x + (1 - lam) * x[perm])
    with pytest.raises(ValueError, match="perm"):
        mix(x, lam, torch.arange(3))
    with pytest.raises(ValueError, match="lam"):
        mix(x, 1.5, perm)


def test_ignored_pixels_do_not_count() -> None:
    logits, target = _batch(4)
    target[1, 0, 3:, :] = 9.0
    one_hot, mask = one_hot_target(target, 3, ignore_label=9)
    lam, perm = 0.6, torch.tensor([1, 0, 3, 2])
    soft, soft_mask = mix(one_hot, lam, perm), mix_mask(mask, perm)
    base = soft_target_loss(logits, soft, soft_mask)
    changed = logits.clone()
    changed[soft_mask.expand_as(changed) == 0] = 1e3 * torch.randn(int((soft_mask == 0).sum()) * 3)
    torch.testing.assert_close(soft_target_loss(changed, soft, soft_mask), base)
    # without the mask those pixels would count
    assert not torch.allclose(soft_target_loss(changed, soft), soft_target_loss(logits, soft))
    # lam = 1 with ignore: the same as CE with ignore_index
    ce = F.cross_entropy(logits, target[:, 0].long(), ignore_index=9)
    torch.testing.assert_close(soft_target_loss(logits, one_hot, mask), ce)
    assert soft_target_loss(logits, one_hot, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="mask must have shape"):
        soft_target_loss(logits, one_hot, mask[:, 0])


def test_beta_sample_reproducible_and_in_range() -> None:
    first = sample_mixing(6, 1.0, generator=torch.Generator().manual_seed(7))
    again = sample_mixing(6, 1.0, generator=torch.Generator().manual_seed(7))
    assert first[0] == again[0] and torch.equal(first[1], again[1])
    assert sorted(first[1].tolist()) == list(range(6))
    g = torch.Generator().manual_seed(8)
    for alpha in (0.05, 0.1, 1.0, 2.0, 50.0):
        lams = [sample_mixing(3, alpha, generator=g)[0] for _ in range(200)]
        assert all(0.0 <= lam <= 1.0 for lam in lams)
    with pytest.raises(ValueError, match="alpha"):
        sample_mixing(3, 0.0)


def test_beta_distribution_moments() -> None:
    g = torch.Generator().manual_seed(9)
    uniform = torch.tensor([sample_mixing(2, 1.0, generator=g)[0] for _ in range(4000)])
    assert abs(uniform.mean().item() - 0.5) < 0.02
    assert abs(uniform.var().item() - 1 / 12) < 0.01                      # Beta(1, 1) = U(0, 1)
    assert abs((uniform < 0.25).float().mean().item() - 0.25) < 0.03
    peaked = torch.tensor([sample_mixing(2, 0.1, generator=g)[0] for _ in range(4000)])
    # Beta(0.1, 0.1): var = 1 / (4 (2 alpha + 1)) = 0.2083, mass near 0 and 1
    assert abs(peaked.var().item() - 1 / (4 * 1.2)) < 0.02
    concentrated = torch.tensor([sample_mixing(2, 20.0, generator=g)[0] for _ in range(2000)])
    assert abs(concentrated.var().item() - 1 / (4 * 41)) < 0.002


def test_finite_from_float16_logits() -> None:
    logits, target = _batch(5)
    big = (logits * 2e4).clamp(-6e4, 6e4).half().requires_grad_()
    one_hot, mask = one_hot_target(target, 3)
    lam, perm = sample_mixing(4, generator=torch.Generator().manual_seed(0))
    value = soft_target_loss(big, mix(one_hot, lam, perm), mix_mask(mask, perm))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(big.grad).all()
    minus_inf = torch.full((1, 3, 2, 2), float("-inf"))
    minus_inf[:, 0] = 0.0
    assert soft_target_loss(minus_inf, one_hot_target(torch.zeros(1, 2, 2), 3)[0]).item() == 0.0   # 0 log 0 = 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv = torch.nn.Conv2d(1, 3, 1)
        out = conv(torch.randn(4, 1, 6, 6))
        auto = soft_target_loss(out, mix(one_hot, lam, perm), mix_mask(mask, perm))
    assert auto.dtype == torch.float32 and torch.isfinite(auto)


def test_a_random_subset_of_the_mixed_images_estimates_the_full_loss_without_bias() -> None:
    from itertools import combinations

    from spcl_nnunet.losses.mixup import sample_rows

    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 2, 5, 5, generator=g)
    onehot, valid = one_hot_target(torch.randint(0, 3, (4, 1, 5, 5), generator=g), 3)
    logits = torch.randn(4, 3, 5, 5, generator=g)
    lam, perm = 0.3, torch.tensor([2, 0, 3, 1])
    for rows in (torch.tensor([1, 3]), torch.tensor([0])):
        torch.testing.assert_close(mix(x, lam, perm, rows), mix(x, lam, perm)[rows])
        torch.testing.assert_close(mix(onehot, lam, perm, rows), mix(onehot, lam, perm)[rows])
        torch.testing.assert_close(mix_mask(valid, perm, rows), mix_mask(valid, perm)[rows])
    full = soft_target_loss(logits, mix(onehot, lam, perm))
    # every subset of 2 of the 4 mixed images equally likely: the mean over subsets is the full loss
    subsets = [torch.tensor(c) for c in combinations(range(4), 2)]
    mean = torch.stack([soft_target_loss(logits[r], mix(onehot, lam, perm, r)) for r in subsets]).mean()
    torch.testing.assert_close(mean, full)
    rows = sample_rows(16, 0.5, torch.Generator().manual_seed(0))
    assert rows.shape == (8,) and rows.unique().numel() == 8 and torch.equal(rows, rows.sort().values)
    assert sample_rows(3, 0.1).shape == (1,) and sample_rows(6, 1.0).tolist() == list(range(6))
    with pytest.raises(ValueError, match="fraction"):
        sample_rows(4, 0.0)
    with pytest.raises(ValueError, match="rows"):
        mix(x, lam, perm, torch.tensor([0.5]))
