"""IIC cluster heads and the dense projection head (spcl_nnunet.heads)."""

from __future__ import annotations

import pytest
import torch

from spcl_nnunet.heads import ClusterHeads, DenseClusterHeads, DenseProjectionHead


def test_cluster_heads_shapes_and_rows_sum_to_one() -> None:
    heads = ClusterHeads(8, num_clusters=6, num_heads=3)
    out = heads(torch.randn(4, 8, 5, 7))
    assert len(out) == 3 and all(p.shape == (4, 6) and p.dtype == torch.float32 for p in out)
    for p in out:
        torch.testing.assert_close(p.sum(1), torch.ones(4))
        assert (p >= 0).all()
    assert not torch.allclose(out[0], out[1])                        # independent sub-heads
    assert [p.shape for p in heads(torch.randn(2, 8, 3, 4, 5))] == [(2, 6)] * 3   # 3-D features
    default = ClusterHeads(8)
    assert len(default(torch.randn(1, 8, 2, 2))) == 5 and default.num_clusters == 20


def test_cluster_heads_pool_then_linear() -> None:
    torch.manual_seed(0)
    heads = ClusterHeads(4, 5, 2)
    x = torch.randn(2, 4, 3, 3)
    for p, linear in zip(heads(x), heads.heads):
        torch.testing.assert_close(p, torch.softmax(linear(x.mean((2, 3))), 1))


def test_dense_cluster_heads() -> None:
    heads = DenseClusterHeads(8, num_clusters=7, num_heads=2)
    x = torch.randn(2, 8, 6, 5)
    out = heads(x)
    assert len(out) == 2 and all(p.shape == (2, 7, 6, 5) and p.dtype == torch.float32 for p in out)
    for p, conv in zip(out, heads.heads):
        torch.testing.assert_close(p.sum(1), torch.ones(2, 6, 5))
        torch.testing.assert_close(p, torch.softmax(conv(x), 1))


def test_dense_projection_head() -> None:
    head = DenseProjectionHead(8, hidden_dim=16, out_dim=12, grid_size=4)
    out = head(torch.randn(3, 8, 17, 13))
    assert out.shape == (3, 12, 4, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3, 4, 4))
    layers = list(head.net)
    assert isinstance(layers[0], torch.nn.Conv2d) and layers[0].kernel_size == (1, 1)
    assert isinstance(layers[1], torch.nn.LeakyReLU) and layers[1].negative_slope == 0.01
    assert isinstance(layers[3], torch.nn.AdaptiveAvgPool2d)
    assert DenseProjectionHead(8)(torch.randn(1, 8, 20, 20)).shape == (1, 256, 10, 10)


def test_float32_outputs_and_gradients_under_autocast() -> None:
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    modules = (ClusterHeads(8, 5, 2), DenseClusterHeads(8, 5, 2), DenseProjectionHead(8, 16, 16, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = [*modules[0](x), *modules[1](x), modules[2](x)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in outputs)
    torch.testing.assert_close(outputs[-1].norm(dim=1), torch.ones(2, 3, 3))
    sum(o.square().sum() for o in outputs).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", [ClusterHeads, DenseClusterHeads, DenseProjectionHead])
def test_channel_mismatch_and_bad_sizes(cls: type) -> None:
    head = cls(8)
    with pytest.raises(ValueError, match=r"5.*8"):
        head(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 8\)"):
        head(torch.randn(2, 8))
    with pytest.raises(ValueError, match="in_channels"):
        cls(0)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="num_clusters"):
        ClusterHeads(8, num_clusters=0)
    with pytest.raises(ValueError, match="num_heads"):
        DenseClusterHeads(8, num_heads=0)
    with pytest.raises(ValueError, match="grid_size"):
        DenseProjectionHead(8, grid_size=0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        DenseClusterHeads(8)(torch.randn(1, 8, 2, 2, 2))
