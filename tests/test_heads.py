"""Tests for spcl_nnunet.networks.heads.ProjectionHead."""

from __future__ import annotations

import pytest
import torch

from spcl_nnunet.networks.heads import ProjectionHead


def test_output_shape_2d():
    head = ProjectionHead(8)
    out = head(torch.randn(3, 8, 5, 6))
    assert out.shape == (3, 256)


def test_output_shape_3d():
    head = ProjectionHead(8, hidden_dim=16, out_dim=32)
    out = head(torch.randn(2, 8, 3, 4, 5))
    assert out.shape == (2, 32)


def test_global_average_pool_then_mlp():
    torch.manual_seed(0)
    head = ProjectionHead(4, hidden_dim=8, out_dim=6)
    v = torch.randn(2, 4)
    x = v[:, :, None, None].expand(2, 4, 3, 5).contiguous()
    torch.testing.assert_close(head(x), head.mlp(v))
    # only the spatial mean matters
    y = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(head(y), head.mlp(y.mean(dim=(2, 3))))


def test_layers_and_gradient():
    head = ProjectionHead(4, hidden_dim=8, out_dim=6)
    assert isinstance(head.mlp[0], torch.nn.Linear) and head.mlp[0].in_features == 4
    assert isinstance(head.mlp[1], torch.nn.LeakyReLU)
    assert isinstance(head.mlp[2], torch.nn.Linear) and head.mlp[2].out_features == 6
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    head(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_channel_mismatch():
    head = ProjectionHead(8)
    with pytest.raises(ValueError, match=r"5.*8"):
        head(torch.randn(2, 5, 4, 4))


def test_bad_rank_and_constructor():
    head = ProjectionHead(8)
    with pytest.raises(ValueError, match=r"\(2, 8\)"):
        head(torch.randn(2, 8))
    with pytest.raises(ValueError, match="hidden_dim"):
        ProjectionHead(8, hidden_dim=0)
