"""The strong view's pixel-wise perturbations for FixMatch-style training, from batchgeneratorsv2."""

from __future__ import annotations

from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform


def strong_intensity_transforms() -> ComposeTransforms:
    """The strong view's pixel-wise perturbations, each applied with its probability (stronger and
    more frequent than nnU-Net's training augmentation, as FixMatch's colour jitter is)."""
    return ComposeTransforms([
        RandomTransform(MultiplicativeBrightnessTransform(BGContrast((0.6, 1.4)), synchronize_channels=False,
                                                          p_per_channel=1), apply_probability=0.8),
        RandomTransform(ContrastTransform(BGContrast((0.6, 1.4)), preserve_range=True, synchronize_channels=False,
                                          p_per_channel=1), apply_probability=0.8),
        RandomTransform(GammaTransform(BGContrast((0.6, 1.6)), p_invert_image=0, synchronize_channels=False,
                                       p_per_channel=1, p_retain_stats=1), apply_probability=0.5),
        RandomTransform(GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_channel=1, synchronize_channels=True),
                        apply_probability=0.5),
        RandomTransform(GaussianBlurTransform(blur_sigma=(0.5, 1.5), synchronize_channels=False,
                                              synchronize_axes=False, p_per_channel=1), apply_probability=0.5),
    ])
