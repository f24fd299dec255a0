"""Feature maps of nnU-Net's PlainConvUNet by resolution, and intensity-only views."""

from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from spcl_nnunet.contrastive.intensity import random_intensity_view
from spcl_nnunet.networks.unet_features import cumulative_strides, decoder_stage_at, decoder_stage_outputs, encode_with_last_conv


def unet(strides, deep_supervision: bool = False) -> PlainConvUNet:
    n = len(strides)
    return PlainConvUNet(1, n, [8, 16, 32, 32, 32, 32][:n], torch.nn.Conv2d, 3, strides, 2, 4, 2, True,
                         torch.nn.InstanceNorm2d, {"affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True},
                         deep_supervision=deep_supervision)


def test_stage_outputs_reproduce_the_decoder() -> None:
    torch.manual_seed(0)
    net = unet([1, 2, 2, 2, 2]).eval()
    x = torch.randn(2, 1, 48, 32)
    skips = net.encoder(x)
    outputs = decoder_stage_outputs(net.decoder, skips)
    assert [tuple(o.shape[2:]) for o in outputs] == [(6, 4), (12, 8), (24, 16), (48, 32)]
    with torch.no_grad():
        assert torch.allclose(net.decoder.seg_layers[-1](outputs[-1]), net(x), atol=1e-6)
    partial = decoder_stage_outputs(net.decoder, skips, upto=1)
    assert len(partial) == 2 and torch.equal(partial[1], outputs[1])
    with pytest.raises(ValueError, match="upto must name a decoder stage 0..3"):
        decoder_stage_outputs(net.decoder, skips, upto=4)


def test_stages_are_found_by_resolution_not_index() -> None:
    five, seven = unet([1, 2, 2, 2, 2]), unet([1, 2, 2, 2, 2, 2])
    assert cumulative_strides(five.encoder) == [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16)]
    assert (decoder_stage_at(five, 1), decoder_stage_at(five, 2), decoder_stage_at(five, 16 // 2)) == (3, 2, 0)
    assert (decoder_stage_at(seven, 1), decoder_stage_at(seven, 2)) == (4, 3)
    anisotropic = unet([1, (1, 2), (2, 2), (2, 2)])           # no stage at 1/2 along both axes
    assert decoder_stage_at(anisotropic, 1) == 2
    with pytest.raises(ValueError, match=r"no decoder stage at 1/2 resolution.*stage 1: 1/1x2"):
        decoder_stage_at(anisotropic, 2)


def test_intensity_view_keeps_the_geometry() -> None:
    x = torch.zeros(3, 1, 16, 16)
    x[0, 0, 4, 7] = x[1, 0, 10, 2] = x[2, 0, 0, 15] = 5.0
    y = random_intensity_view(x, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y.flatten(1).argmax(1), x.flatten(1).argmax(1))
    assert not torch.allclose(y, x)
    constant = torch.full((2, 1, 8, 8), 3.0)
    assert torch.allclose(random_intensity_view(constant, noise=0.0).std(dim=(1, 2, 3)), torch.zeros(2), atol=1e-6)


def test_intensity_view_is_reproducible_and_checked() -> None:
    x = torch.randn(2, 1, 8, 8)
    a = random_intensity_view(x, generator=torch.Generator().manual_seed(1))
    b = random_intensity_view(x, generator=torch.Generator().manual_seed(1))
    c = random_intensity_view(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert random_intensity_view(x.half()).dtype == torch.float16
    with pytest.raises(ValueError, match="contrast range"):
        random_intensity_view(x, contrast=(1.2, 0.8))
    with pytest.raises(ValueError, match="noise must be >= 0"):
        random_intensity_view(x, noise=-1)


def test_last_conv_output_is_the_bottleneck_before_its_norm() -> None:
    torch.manual_seed(0)
    net = unet([1, 2, 2, 2, 2])
    x = torch.randn(3, 1, 32, 32)
    skips, last_conv = encode_with_last_conv(net.encoder, x)
    plain = net.encoder(x)
    assert len(skips) == len(plain) and all(torch.equal(a, b) for a, b in zip(skips, plain))
    assert last_conv.shape == skips[-1].shape
    block = net.encoder.stages[-1][-1].convs[-1]
    assert torch.allclose(block.nonlin(block.norm(last_conv)), skips[-1], atol=1e-5)
    # the instance norm takes out each image's channel means; the conv output keeps them
    assert skips[-1].flatten(2).mean(-1).std(0).median() < last_conv.flatten(2).mean(-1).std(0).median()
    assert not net.encoder.stages[-1][-1].convs[-1].conv._forward_hooks      # the hook is removed


def test_last_conv_output_needs_a_plain_conv_encoder() -> None:
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    net = ResidualEncoderUNet(1, 3, [8, 16, 32], torch.nn.Conv2d, 3, [1, 2, 2], 1, 2, 1, True,
                              torch.nn.InstanceNorm2d, {"affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True})
    with pytest.raises(ValueError, match="PlainConvUNet's encoder only"):
        encode_with_last_conv(net.encoder, torch.randn(1, 1, 16, 16))
