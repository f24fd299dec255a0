"""Feature maps of nnU-Net's ``PlainConvUNet`` picked by resolution.

The compared methods take features at fixed places of the authors' U-Net: the encoder's end
(1/16), the decoder block at 1/2 resolution (``Up_conv3``) and the full-resolution one
(``Up_conv2``). nnU-Net's networks have 5-7 stages, so the places are found by resolution, not by
index: decoder stage ``s`` works at the resolution of encoder skip ``-(s + 2)``, whose
downsampling factor is the product of the encoder strides up to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU, StackedConvBlocks
from torch import Tensor, nn

__all__ = ["cumulative_strides", "decoder_stage_at", "decoder_stage_outputs", "encode_with_last_conv"]


def cumulative_strides(encoder: nn.Module) -> list[tuple[int, ...]]:
    """Per encoder stage, its downsampling factor per axis with respect to the input."""
    factors, total = [], None
    for stride in encoder.strides:
        stride = tuple(int(s) for s in (stride if isinstance(stride, Sequence) else [stride]))
        total = stride if total is None else tuple(a * b for a, b in zip(total, stride))
        factors.append(total)
    return factors


def decoder_stage_at(network: nn.Module, downsampling: int) -> int:
    """Index of the decoder stage whose output is at 1/``downsampling`` of the input resolution
    along every axis; a ValueError lists the resolutions the network has."""
    factors = cumulative_strides(network.encoder)
    num_stages = len(network.decoder.stages)
    available = {}
    for s in range(num_stages):
        factor = factors[len(factors) - (s + 2)]
        available[s] = factor
        if all(f == downsampling for f in factor):
            return s
    raise ValueError(f"the network has no decoder stage at 1/{downsampling} resolution; its decoder stages work at "
                     + ", ".join(f"stage {s}: 1/{'x'.join(map(str, f))}" for s, f in available.items()))


def decoder_stage_outputs(decoder: nn.Module, skips: Sequence[Tensor], upto: int | None = None) -> list[Tensor]:
    """Outputs of ``decoder.stages[0..upto]`` (lowest resolution first) for the encoder's ``skips``:
    the loop of dynamic-network-architectures' ``UNetDecoder.forward`` without its segmentation
    layers (``upto`` None: every stage)."""
    last = len(decoder.stages) - 1 if upto is None else upto
    if not 0 <= last < len(decoder.stages):
        raise ValueError(f"upto must name a decoder stage 0..{len(decoder.stages) - 1}, got {upto}")
    outputs, lres = [], skips[-1]
    for s in range(last + 1):
        x = decoder.transpconvs[s](lres)
        x = decoder.stages[s](torch.cat((x, skips[-(s + 2)]), 1))
        outputs.append(x)
        lres = x
    return outputs


def last_conv_block(encoder: nn.Module) -> ConvDropoutNormReLU:
    """The encoder's last conv -> (dropout) -> norm -> nonlin block (that of ``PlainConvEncoder``'s
    last stage); a ValueError for encoders built otherwise (e.g. residual blocks)."""
    stage = encoder.stages[-1]
    last = stage[-1] if isinstance(stage, nn.Sequential) else stage
    if not isinstance(last, StackedConvBlocks) or not isinstance(last.convs[-1], ConvDropoutNormReLU):
        raise ValueError(f"{type(encoder).__name__}'s last stage does not end in a conv -> norm -> nonlin block "
                         f"({type(last).__name__}): the last convolution's output is defined for PlainConvUNet's "
                         f"encoder only")
    return last.convs[-1]


def encode_with_last_conv(encoder: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """The encoder's skips for ``x`` and the output of its last convolution before that block's
    normalisation and nonlinearity (same channels and size as ``skips[-1]``), from one forward."""
    captured: list[Tensor] = []
    hook = last_conv_block(encoder).conv.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        skips = encoder(x)
    finally:
        hook.remove()
    return skips, captured[-1]
