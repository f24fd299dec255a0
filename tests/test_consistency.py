"""Transformation-consistent Mean Teacher loss and entropy minimisation (spcl_nnunet.losses.consistency)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spcl_nnunet.losses.consistency import (entropy_loss, random_geometric_transform, transformation_consistency_loss)


def _pixelwise_net() -> nn.Module:
    """A network that commutes with any re-indexing of pixels (1x1 convolutions only)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 8, 1), nn.LeakyReLU(), nn.Conv2d(8, 4, 1))


@pytest.mark.parametrize("shape", [(32, 32), (24, 40), (33, 20)])
@pytest.mark.parametrize("seed", range(4))
def test_identical_teacher_gives_zero_under_any_transform(shape: tuple[int, int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 1, *shape, generator=g)
    net = _pixelwise_net()
    transform = random_geometric_transform(5, shape, max_rotation_deg=30.0, scale_range=(0.8, 1.2), generator=g)
    student = net(transform.apply(x))
    with torch.no_grad():
        teacher = net(x)
    # zero up to float rounding of the convolutions (their summation order depends on the memory layout)
    assert transformation_consistency_loss(student, teacher, transform).item() < 1e-12
    # the same comparison without transforming the teacher's output is not zero: T must be applied
    identity = random_geometric_transform(5, shape, flips=False, rot90=False, max_rotation_deg=0.0,
                                          scale_range=(1.0, 1.0))
    assert transformation_consistency_loss(student, teacher, identity).item() > 1e-3


def test_identity_transform_and_pure_rotations_and_flips() -> None:
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    identity = random_geometric_transform(2, (16, 16), flips=False, rot90=False, max_rotation_deg=0.0,
                                          scale_range=(1.0, 1.0))
    assert torch.equal(identity.apply(x), x)
    assert torch.equal(identity.valid_mask(), torch.ones(2, 1, 16, 16))

    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        t = random_geometric_transform(2, (16, 16), max_rotation_deg=0.0, scale_range=(1.0, 1.0), generator=g)
        out = t.apply(x)
        for b in range(2):
            candidates = [torch.rot90(v, k, dims=(1, 2)) for k in range(4)
                          for v in (x[b], x[b].flip(2))]                 # the 8 symmetries of the square
            assert any(torch.equal(out[b], c) for c in candidates)
        assert torch.equal(t.valid_mask(), torch.ones(2, 1, 16, 16))


def test_transform_re_indexes_pixels_and_masks_the_outside() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.arange(1, 1 + 20 * 30, dtype=torch.float32).view(1, 1, 20, 30).repeat(3, 1, 1, 1)
    t = random_geometric_transform(3, (20, 30), max_rotation_deg=20.0, scale_range=(0.9, 1.1), generator=g)
    out, mask = t.apply(x), t.valid_mask()
    assert set(out[mask.bool()].tolist()) <= set(x.flatten().tolist())   # values are moved, never blended
    assert torch.all(out[~mask.bool()] == 0)
    assert 0.5 < mask.mean().item() <= 1.0


def test_gradient_flows_only_through_the_student() -> None:
    student = torch.randn(2, 3, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 3, 8, 8, requires_grad=True)
    t = random_geometric_transform(2, (8, 8), generator=torch.Generator().manual_seed(0))
    loss = transformation_consistency_loss(student, teacher, t)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_consistency_value_and_errors() -> None:
    identity = random_geometric_transform(1, (2, 2), flips=False, rot90=False, max_rotation_deg=0.0,
                                          scale_range=(1.0, 1.0))
    student = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])      # p = (0.5, 0.5)
    teacher = torch.tensor([[[[50.0, 50.0], [50.0, 50.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # p = (1, 0)
    # per pixel: (0.5 - 1)^2 + (0.5 - 0)^2 = 0.5, summed over classes, averaged over pixels
    assert transformation_consistency_loss(student, teacher, identity).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        transformation_consistency_loss(student, teacher[:, :1], identity)
    with pytest.raises(ValueError, match="2-D"):
        random_geometric_transform(1, (4, 4, 4))
    with pytest.raises(ValueError, match="scale_range"):
        random_geometric_transform(1, (4, 4), scale_range=(1.2, 1.0))
    with pytest.raises(ValueError, match="transform made for"):
        identity.apply(torch.zeros(1, 1, 3, 3))


def test_entropy_of_one_hot_is_zero_and_of_uniform_is_log_c() -> None:
    for c in (2, 4, 7):
        assert entropy_loss(torch.zeros(3, c, 5, 5)).item() == pytest.approx(math.log(c), rel=1e-6)
    one_hot = torch.full((2, 4, 3, 3), -float("inf"))
    one_hot[:, 2] = 0.0
    assert entropy_loss(one_hot).item() == 0.0
    large = torch.zeros(2, 4, 3, 3)
    large[:, 1] = 1e4
    assert entropy_loss(large).item() == 0.0
    mixed = torch.log(torch.tensor([0.25, 0.75])).view(1, 2, 1, 1)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_loss(mixed).item() == pytest.approx(expected, rel=1e-6)


def test_losses_stay_finite_in_float16() -> None:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 4, 16, 16, generator=g) * 3e4).clamp(-6e4, 6e4).half()   # float16's range
    teacher = (torch.randn(2, 4, 16, 16, generator=g) * 3e4).clamp(-6e4, 6e4).half()
    t = random_geometric_transform(2, (16, 16), generator=g)
    for value in (transformation_consistency_loss(logits, teacher, t), entropy_loss(logits)):
        assert value.dtype == torch.float32 and torch.isfinite(value)
    net = _pixelwise_net()
    x = torch.randn(2, 1, 16, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.float16):
        student_out = net(t.apply(x))
        teacher_out = net(x)
        mt = transformation_consistency_loss(student_out, teacher_out, t)
        ent = entropy_loss(student_out)
    assert torch.isfinite(mt) and torch.isfinite(ent)
    assert mt.item() < 1e-2                                           # half-precision rounding only


def test_flips_are_involutions_at_any_resolution() -> None:
    from spcl_nnunet.losses.consistency import FlipTransform, random_flips

    g = torch.Generator().manual_seed(0)
    t = random_flips(6, generator=g)
    assert isinstance(t, FlipTransform) and t.flip_h.dtype == torch.bool and t.flip_h.shape == (6,)
    for shape in ((8, 8), (7, 12), (1, 5)):
        x = torch.randn(6, 3, *shape, generator=g)
        out = t.apply(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.equal(t.apply(out), x)
        for b in range(6):
            expected = x[b]
            if t.flip_h[b]:
                expected = expected.flip(-2)
            if t.flip_w[b]:
                expected = expected.flip(-1)
            assert torch.equal(out[b], expected)
    flips = FlipTransform(torch.tensor([True, False]), torch.tensor([False, True]))
    x = torch.arange(2 * 6, dtype=torch.float32).view(2, 1, 2, 3)
    assert flips.apply(x)[0, 0].tolist() == [[3, 4, 5], [0, 1, 2]]
    assert flips.apply(x)[1, 0].tolist() == [[8, 7, 6], [11, 10, 9]]
    # its own adjoint: the gradient through T is T of the gradient
    leaf = torch.randn(6, 2, 5, 4, generator=g, requires_grad=True)
    weight = torch.randn(6, 2, 5, 4, generator=g)
    (t.apply(leaf) * weight).sum().backward()
    assert torch.equal(leaf.grad, t.apply(weight))
    none = FlipTransform(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool))
    assert none.apply(x[:1].expand(3, -1, -1, -1)).shape == (3, 1, 2, 3)


def test_flips_commute_with_pooling_by_two() -> None:
    import torch.nn.functional as F

    from spcl_nnunet.losses.consistency import random_flips

    g = torch.Generator().manual_seed(1)
    t = random_flips(8, probability=0.5, generator=g)
    assert t.flip_h.any() and t.flip_w.any() and not t.flip_h.all()
    x = torch.randn(8, 2, 12, 10, generator=g)
    resamplings = {"avg pool": lambda v: F.avg_pool2d(v, 2), "max pool": lambda v: F.max_pool2d(v, 2),
                   "nearest upsampling": lambda v: F.interpolate(v, scale_factor=2, mode="nearest")}
    for name, resample in resamplings.items():
        torch.testing.assert_close(resample(t.apply(x)), t.apply(resample(x)), msg=name)   # avg: summation order
    # negative checks: on an odd side pooling drops the last row, which a flip moves to the front;
    # strided subsampling (every other pixel) keeps even indices, which a flip of an even side makes odd
    odd = torch.randn(8, 2, 11, 10, generator=g)
    assert not torch.allclose(F.avg_pool2d(t.apply(odd), 2), t.apply(F.avg_pool2d(odd, 2)))
    assert not torch.allclose(t.apply(x)[..., ::2, ::2], t.apply(x[..., ::2, ::2]))


def test_random_flips_probability_and_errors() -> None:
    from spcl_nnunet.losses.consistency import FlipTransform, random_flips

    t = random_flips(4000, 0.8, generator=torch.Generator().manual_seed(2))
    assert abs(t.flip_h.float().mean().item() - 0.8) < 0.03 and abs(t.flip_w.float().mean().item() - 0.8) < 0.03
    assert 0.5 < (t.flip_h == t.flip_w).float().mean().item() < 0.8          # independent axes: 0.68
    assert random_flips(5, 1.0).flip_h.all() and not random_flips(5, 0.0).flip_w.any()
    again = random_flips(4000, 0.8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(t.flip_h, again.flip_h) and torch.equal(t.flip_w, again.flip_w)
    with pytest.raises(ValueError, match="probability"):
        random_flips(2, 1.5)
    with pytest.raises(ValueError, match="bool"):
        FlipTransform(torch.tensor([1, 0]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="batch of 2"):
        FlipTransform(torch.tensor([True, False]), torch.tensor([False, True])).apply(torch.zeros(3, 1, 4, 4))
