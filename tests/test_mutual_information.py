"""Discrete mutual information, IIC (spcl_nnunet.losses.mutual_information): closed forms and numerics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spcl_nnunet.losses.mutual_information import (dense_iic_loss, iic_loss, multihead_dense_iic_loss,
                                                    multihead_iic_loss)


def _balanced_one_hot(k: int, per_cluster: int = 3) -> torch.Tensor:
    return F.one_hot(torch.arange(k).repeat(per_cluster), k).float()


@pytest.mark.parametrize("k", [2, 5, 20])
def test_identical_balanced_one_hot_gives_minus_log_k(k: int) -> None:
    a = _balanced_one_hot(k)
    assert iic_loss(a, a).item() == pytest.approx(-math.log(k), abs=1e-5)
    # relabelling the clusters of both views alike keeps the MI
    relabelled = a[:, torch.randperm(k, generator=torch.Generator().manual_seed(k))]
    assert iic_loss(relabelled, relabelled).item() == pytest.approx(-math.log(k), abs=1e-5)
    # half of the samples uniform: less information, not the minimum
    half = torch.cat([a[: k], torch.full((2 * k, k), 1.0 / k)])
    assert iic_loss(half, half).item() > -math.log(k) + 0.1


@pytest.mark.parametrize("seed", range(5))
def test_lower_bound_and_symmetry_on_random_softmaxes(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k = 7
    p1 = torch.softmax(torch.randn(40, k, generator=g) * 4, dim=1)
    p2 = torch.softmax(torch.randn(40, k, generator=g) * 4, dim=1)
    value = iic_loss(p1, p2)
    assert value.dtype == torch.float32
    assert value.item() >= -math.log(k) - 1e-6
    assert value.item() <= 1e-6                                       # MI >= 0
    torch.testing.assert_close(iic_loss(p2, p1), value)


def test_uniform_rows_and_collapsed_assignment_give_zero() -> None:
    k = 20
    uniform = torch.full((16, k), 1.0 / k)
    assert iic_loss(uniform, uniform).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(16, k)
    collapsed[:, 3] = 1.0
    assert iic_loss(collapsed, collapsed).item() == pytest.approx(0.0, abs=1e-6)
    # a balanced assignment is not at 0
    assert iic_loss(_balanced_one_hot(k), _balanced_one_hot(k)).item() < -1.0


def test_joint_is_symmetrised_before_the_marginals() -> None:
    # views (0, 1) and (1, 1): the raw joint [[0, 1], [0, 1]] / 2 has MI 0; symmetrised it is
    # [[0, 1/4], [1/4, 1/2]] with marginals (1/4, 3/4), MI = 1/2 log(32/27)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert iic_loss(a, b).item() == pytest.approx(-0.5 * math.log(32 / 27), rel=1e-5)


def test_dense_equals_flattened_pixels() -> None:
    g = torch.Generator().manual_seed(1)
    b, k, h, w = 2, 4, 5, 6
    maps1 = F.one_hot(torch.randint(0, k, (b, h, w), generator=g), k).permute(0, 3, 1, 2).float()
    maps2 = F.one_hot(torch.randint(0, k, (b, h, w), generator=g), k).permute(0, 3, 1, 2).float()
    flat = [m.permute(0, 2, 3, 1).reshape(-1, k) for m in (maps1, maps2)]
    torch.testing.assert_close(dense_iic_loss(maps1, maps2), iic_loss(*flat))
    torch.testing.assert_close(dense_iic_loss(maps1, maps1), iic_loss(flat[0], flat[0]))
    soft1 = torch.softmax(torch.randn(b, k, h, w, generator=g), dim=1)
    soft2 = torch.softmax(torch.randn(b, k, h, w, generator=g), dim=1)
    soft_flat = [m.permute(0, 2, 3, 1).reshape(-1, k) for m in (soft1, soft2)]
    torch.testing.assert_close(dense_iic_loss(soft1, soft2), iic_loss(*soft_flat))
    # pixels matter as pairs: pairing each pixel with another image's pixel changes the value
    assert not torch.allclose(dense_iic_loss(maps1, maps1), dense_iic_loss(maps1, maps1.flip(0)))


def test_multihead_is_the_mean_over_independent_heads() -> None:
    k = 5
    one_hot = _balanced_one_hot(k)                              # head 0: -log K
    uniform = torch.full_like(one_hot, 1 / k)                   # head 1: 0
    heads = torch.stack([one_hot, uniform], dim=1)              # (N, 2, K)
    assert multihead_iic_loss(heads, heads).item() == pytest.approx(-math.log(k) / 2, abs=1e-5)
    g = torch.Generator().manual_seed(4)
    p1 = torch.softmax(torch.randn(12, 3, k, generator=g), dim=2)
    p2 = torch.softmax(torch.randn(12, 3, k, generator=g), dim=2)
    per_head = torch.stack([iic_loss(p1[:, h], p2[:, h]) for h in range(3)])
    torch.testing.assert_close(multihead_iic_loss(p1, p2), per_head.mean())
    d1 = torch.softmax(torch.randn(2, 3, k, 4, 6, generator=g), dim=2)
    d2 = torch.softmax(torch.randn(2, 3, k, 4, 6, generator=g), dim=2)
    per_head = torch.stack([dense_iic_loss(d1[:, h], d2[:, h]) for h in range(3)])
    torch.testing.assert_close(multihead_dense_iic_loss(d1, d2), per_head.mean())
    with pytest.raises(ValueError, match=r"\(N, heads, K\)"):
        multihead_iic_loss(p1[:, 0], p2[:, 0])
    with pytest.raises(ValueError, match=r"\(B, heads, K, H, W\)"):
        multihead_dense_iic_loss(d1[:, 0], d2[:, 0])
    with pytest.raises(ValueError, match="differ in shape"):
        multihead_dense_iic_loss(d1, d2[:, :2])


def test_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        iic_loss(torch.rand(4, 3), torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        iic_loss(torch.rand(4, 3, 2), torch.rand(4, 3, 2))
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        dense_iic_loss(torch.rand(4, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        dense_iic_loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match="eps"):
        iic_loss(torch.rand(4, 3), torch.rand(4, 3), eps=0.0)


def _assert_finite_loss_and_grads(loss: torch.Tensor, *leaves: torch.Tensor) -> None:
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_finite_from_float16_including_collapsed_heads() -> None:
    g = torch.Generator().manual_seed(2)
    k = 20
    # collapsed heads: float16 softmax of huge logits is exactly one-hot (and mostly on one cluster)
    logits1 = (torch.randn(32, k, generator=g) * 1e4).clamp(-6e4, 6e4).half().requires_grad_()
    logits2 = torch.full((32, k), -6e4, dtype=torch.float16)
    logits2[:, 0] = 6e4
    logits2.requires_grad_()
    p1, p2 = torch.softmax(logits1, dim=1), torch.softmax(logits2, dim=1)
    assert p1.dtype == torch.float16 and ((p1 == 0) | (p1 == 1)).all()
    _assert_finite_loss_and_grads(iic_loss(p1, p2), logits1, logits2)
    # probabilities as float16 leaves, zeros included
    q1 = p1.detach().clone().requires_grad_()
    q2 = p2.detach().clone().requires_grad_()
    _assert_finite_loss_and_grads(iic_loss(q1, q2), q1, q2)
    d1 = torch.softmax(torch.randn(2, k, 6, 6, generator=g).half() * 1e4, dim=1).requires_grad_()
    d2 = torch.softmax(torch.randn(2, k, 6, 6, generator=g).half() * 1e4, dim=1).requires_grad_()
    _assert_finite_loss_and_grads(dense_iic_loss(d1, d2), d1, d2)
    # eps = 1e-10 survives: in float16 it would be 0 and log(0) = -inf
    assert torch.tensor(1e-10, dtype=torch.float16).item() == 0.0


def test_finite_under_bfloat16_autocast() -> None:
    torch.manual_seed(3)
    k = 20
    linear = torch.nn.Linear(8, k)
    conv = torch.nn.Conv2d(8, k, 1)
    x = torch.randn(6, 8)
    fmap = torch.randn(2, 8, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = linear(x)
        zd = conv(fmap)
        assert z.dtype == torch.bfloat16
        global_value = iic_loss(torch.softmax(z, dim=1), torch.softmax(z.flip(0), dim=1))
        dense_value = dense_iic_loss(torch.softmax(zd, dim=1), torch.softmax(zd * 1e3, dim=1))
    for value in (global_value, dense_value):
        assert value.dtype == torch.float32 and torch.isfinite(value)
    (global_value + dense_value).backward()
    for p in (*linear.parameters(), *conv.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()
