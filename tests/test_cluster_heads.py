"""IIC cluster heads and the dense projection head (spcl_nnunet.networks.heads)."""

from __future__ import annotations

import pytest
import torch

from spcl_nnunet.networks.heads import ClusterHeads, DenseClusterHeads, DenseProjectionHead


def test_cluster_heads_shapes_and_rows_sum_to_one() -> None:
    heads = ClusterHeads(8, num_clusters=6, num_heads=3)
    out = heads(torch.randn(4, 8, 5, 7))
    assert out.shape == (4, 3, 6) and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(2), torch.ones(4, 3))
    assert (out >= 0).all()
    assert not torch.allclose(out[:, 0], out[:, 1])                  # independent sub-heads
    assert heads(torch.randn(2, 8, 3, 4, 5)).shape == (2, 3, 6)      # 3-D features
    default = ClusterHeads(8)
    assert default(torch.randn(1, 8, 2, 2)).shape == (1, 5, 20) and default.num_clusters == 20


def test_cluster_heads_pool_then_linear_per_sub_head() -> None:
    torch.manual_seed(0)
    heads = ClusterHeads(4, 5, 2)
    x = torch.randn(2, 4, 3, 3)
    out = heads(x)
    for h in range(2):              # sub-head h: rows h*K .. (h+1)*K of the shared Linear
        weight, bias = heads.linear.weight[h * 5:(h + 1) * 5], heads.linear.bias[h * 5:(h + 1) * 5]
        torch.testing.assert_close(out[:, h], torch.softmax(x.mean((2, 3)) @ weight.t() + bias, 1))


def test_sub_heads_initialised_as_separate_layers() -> None:
    """One Linear(C, heads * K) / Conv2d(C, heads * K, 1): PyTorch's default init bounds depend
    on the fan-in C only, so each sub-head starts as its own Linear(C, K) would."""
    torch.manual_seed(1)
    bound = 1 / 64 ** 0.5
    for layer in (ClusterHeads(64, 20, 5).linear, DenseClusterHeads(64, 20, 5).conv):
        for tensor in (layer.weight, layer.bias):
            assert tensor.shape[0] == 100 and tensor.abs().max() <= bound
            assert tensor.abs().max() > 0.8 * bound          # the full range, not a narrower init


def test_dense_cluster_heads() -> None:
    heads = DenseClusterHeads(8, num_clusters=7, num_heads=2)
    x = torch.randn(2, 8, 6, 5)
    out = heads(x)
    assert out.shape == (2, 2, 7, 6, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(2), torch.ones(2, 2, 6, 5))
    logits = heads.conv(x)
    for h in range(2):
        torch.testing.assert_close(out[:, h], torch.softmax(logits[:, h * 7:(h + 1) * 7], 1))


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
        outputs = [modules[0](x), modules[1](x), modules[2](x)]
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
