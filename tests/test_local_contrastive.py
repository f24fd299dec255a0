"""Local contrastive loss of Chaitanya et al. (spcl_nnunet.losses.local_contrastive)."""

from __future__ import annotations

import math

import pytest
import torch

from spcl_nnunet.losses.local_contrastive import local_contrastive_loss, sample_grid_points


@pytest.mark.parametrize(("batch", "points"), [(1, 1), (2, 5), (4, 3)])
def test_identical_embeddings_give_log_2m_minus_1(batch: int, points: int) -> None:
    z = torch.ones(batch, 16, 10, 10)
    rows, cols = sample_grid_points(batch, 10, points, generator=torch.Generator().manual_seed(0))
    m = batch * points
    value = local_contrastive_loss(z, z.clone(), rows, cols)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(math.log(2 * m - 1), rel=1e-5)


def test_grid_points_distinct_and_reproducible() -> None:
    rows, cols = sample_grid_points(8, 10, 5, generator=torch.Generator().manual_seed(4))
    assert rows.shape == cols.shape == (8, 5) and rows.dtype == cols.dtype == torch.long
    assert ((rows >= 0) & (rows < 10) & (cols >= 0) & (cols < 10)).all()
    for r, c in zip(rows, cols):
        assert len(set(r.tolist())) == 5 and len(set(c.tolist())) == 5
    again = sample_grid_points(8, 10, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(rows, again[0]) and torch.equal(cols, again[1])
    other = sample_grid_points(8, 10, 5, generator=torch.Generator().manual_seed(5))
    assert not (torch.equal(rows, other[0]) and torch.equal(cols, other[1]))
    assert not torch.equal(rows, cols)                          # rows and cols drawn independently
    full_rows, _ = sample_grid_points(3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert all(sorted(r.tolist()) == [0, 1, 2, 3] for r in full_rows)
    with pytest.raises(ValueError, match="num_points=11"):
        sample_grid_points(2, 10, 11)
    with pytest.raises(ValueError, match="batch_size"):
        sample_grid_points(0)


def test_loss_uses_the_sampled_points_in_both_views() -> None:
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(2, 8, 10, 10, generator=g)
    z2 = torch.randn(2, 8, 10, 10, generator=g)
    rows, cols = sample_grid_points(2, 10, 5, generator=g)
    base = local_contrastive_loss(z1, z2, rows, cols)
    changed = z2.clone()
    picked = torch.zeros(2, 10, 10, dtype=torch.bool)
    picked[torch.arange(2)[:, None], rows, cols] = True
    changed[~picked[:, None].expand_as(changed)] = 123.0            # other cells do not count
    torch.testing.assert_close(local_contrastive_loss(z1, changed, rows, cols), base)
    changed[:, :, rows[0, 0], cols[0, 0]] += 5.0                    # a sampled cell does
    assert not torch.allclose(local_contrastive_loss(z1, changed, rows, cols), base)
    # scale of the embeddings does not matter (L2-normalised)
    torch.testing.assert_close(local_contrastive_loss(3 * z1, 0.5 * z2, rows, cols), base)


def test_separated_embedding_beats_random() -> None:
    g = torch.Generator().manual_seed(1)
    b, p, d = 2, 5, 16
    rows, cols = sample_grid_points(b, 10, p, generator=g)
    z = torch.randn(b, d, 10, 10, generator=g)
    # each sampled point gets its own basis vector, the same in both views
    for i in range(b):
        for j in range(p):
            z[i, :, rows[i, j], cols[i, j]] = torch.nn.functional.one_hot(torch.tensor(i * p + j), d).float()
    separated = local_contrastive_loss(z, z.clone(), rows, cols)
    random = local_contrastive_loss(torch.randn(b, d, 10, 10, generator=g), torch.randn(b, d, 10, 10, generator=g),
                                    rows, cols)
    assert separated.item() < 1e-3 < random.item()
    # the second view taken from the other image: positives no longer match
    assert local_contrastive_loss(z, z.flip(0), rows, cols).item() > 1.0


def test_finite_from_float16_and_gradient() -> None:
    g = torch.Generator().manual_seed(2)
    z1 = (torch.randn(3, 32, 10, 10, generator=g) * 1e4).half().requires_grad_()
    z2 = (torch.randn(3, 32, 10, 10, generator=g) * 1e-4).half().requires_grad_()
    rows, cols = sample_grid_points(3, generator=g)
    value = local_contrastive_loss(z1, z2, rows, cols)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all() and z2.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_value = local_contrastive_loss(z1.detach().float(), z2.detach().float(), rows, cols)
    assert autocast_value.dtype == torch.float32 and torch.isfinite(autocast_value)


def test_errors() -> None:
    z = torch.randn(2, 4, 10, 10)
    rows, cols = sample_grid_points(2)
    with pytest.raises(ValueError, match="same shape"):
        local_contrastive_loss(z, z[:, :3], rows, cols)
    with pytest.raises(ValueError, match=r"\(2, num_points\)"):
        local_contrastive_loss(z, z, rows[:1], cols[:1])
    with pytest.raises(ValueError, match="out of range"):
        local_contrastive_loss(z, z, rows + 10, cols)
    with pytest.raises(ValueError, match="temperature"):
        local_contrastive_loss(z, z, rows, cols, temperature=0.0)
