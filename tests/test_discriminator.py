"""DCGAN-style patch discriminator with a depth fitted to the patch size (spcl_nnunet.networks.discriminator)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spcl_nnunet.networks.discriminator import PatchDiscriminator


@pytest.mark.parametrize(("patch", "depth", "out"), [((20, 20), 3, (2, 2)), ((64, 48), 4, (4, 3)),
                                                     ((256, 224), 4, (16, 14)), ((4, 9), 1, (2, 4))])
def test_forward_backward_at_nnunet_patch_sizes(patch: tuple[int, int], depth: int, out: tuple[int, int]) -> None:
    torch.manual_seed(0)
    d = PatchDiscriminator(4, patch)
    assert d.num_downsamplings == depth and d.output_size == out
    x = torch.softmax(torch.randn(2, 4, *patch), dim=1).requires_grad_()
    logits = d(x)
    assert logits.shape == (2, 1, *out) and torch.isfinite(logits).all()
    logits.mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


def test_blocks_channels_and_batch_norm() -> None:
    d = PatchDiscriminator(5, (256, 224))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(5, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs[:-1])
    assert convs[-1].kernel_size == (3, 3) and convs[-1].stride == (1, 1)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3          # all blocks but the first
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    assert PatchDiscriminator(5, (256, 224), max_downsamplings=2).num_downsamplings == 2
    assert PatchDiscriminator(5, (512, 512), max_downsamplings=6).output_size == (8, 8)
    single = PatchDiscriminator(5, (20, 20))
    single(torch.randn(1, 5, 20, 20))                           # batch 1 in train mode: BN has 2x2 outputs


def test_initialisation() -> None:
    torch.manual_seed(1)
    d = PatchDiscriminator(4, (64, 64))
    big = [m for m in d.modules() if isinstance(m, nn.Conv2d)][3].weight     # 256 * 512 * 16 weights
    assert abs(big.std().item() - 0.02) < 0.001 and abs(big.mean().item()) < 0.001
    norms = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    weights = torch.cat([n.weight.detach() for n in norms])
    assert abs(weights.mean().item() - 1.0) < 0.005 and 0.01 < weights.std().item() < 0.03
    assert all(torch.all(m.bias == 0) for m in d.modules() if getattr(m, "bias", None) is not None)


def test_errors() -> None:
    with pytest.raises(ValueError, match="3 px.*at least 4 px"):
        PatchDiscriminator(4, (3, 64))
    with pytest.raises(ValueError, match="2-D"):
        PatchDiscriminator(4, (32, 32, 32))
    with pytest.raises(ValueError, match="in_channels"):
        PatchDiscriminator(0, (32, 32))
    d = PatchDiscriminator(4, (32, 32))
    with pytest.raises(ValueError, match="channel mismatch"):
        d(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="spatial mismatch"):
        d(torch.randn(1, 4, 32, 48))
    with pytest.raises(ValueError, match=r"\(B, 4, 32, 32\)"):
        d(torch.randn(4, 32, 32))


def test_autocast_bfloat16() -> None:
    d = PatchDiscriminator(3, (32, 24))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(torch.randn(2, 3, 32, 24))
    assert d.num_downsamplings == 3 and out.shape == (2, 1, 4, 3) and torch.isfinite(out.float()).all()


def test_batch_norm_keeps_no_running_statistics() -> None:
    """Identical copies on several GPUs stay identical: the state is parameters only."""
    from spcl_nnunet.networks.discriminator import PatchDiscriminator

    d = PatchDiscriminator(4, (32, 32))
    before = {k: v.clone() for k, v in d.state_dict().items()}
    d(torch.randn(2, 4, 32, 32))
    assert all(torch.equal(v, before[k]) for k, v in d.state_dict().items())
    assert set(d.state_dict()) == {k for k, _ in d.named_parameters()}
