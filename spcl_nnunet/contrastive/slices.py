"""Slice-position meta-labels on the axis that nnU-Net's 2d configuration really slices.

nnU-Net's preprocessing transposes every scan with ``transpose_forward`` (the axis of largest
spacing first), crops it to the non-zero region and resamples it in-plane only (2d keeps each
case's own spacing on the first axis). Its 2d data loader then samples slices along that first
axis. The partition of a preprocessed slice is therefore computed on that axis, **relative to
the whole scan before nnU-Net's cropping** (what the user considers the volume): slice ``i`` of
the cropped array is slice ``bbox_start + i`` of ``shape_before_cropping[0]`` slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def preprocessed_slice_partitions(num_slices: int, properties: Mapping[str, Any], partitions: int,
                                  case_id: str = "<case>") -> np.ndarray:
    """Partition index (0..S-1) of each of the ``num_slices`` slices of a preprocessed case.

    ``properties`` is the case's nnU-Net properties dict (``shape_before_cropping`` and
    ``bbox_used_for_cropping``, both in the transposed axis order). If the first axis was
    resampled (not the case for nnU-Net's 2d configuration) slice centres are mapped back
    proportionally.
    """
    if partitions < 1:
        raise ValueError(f"slice_partitions must be >= 1, got {partitions}")
    try:
        total = int(properties["shape_before_cropping"][0])
        start, stop = (int(v) for v in properties["bbox_used_for_cropping"][0])
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"preprocessed properties of case {case_id!r} lack 'shape_before_cropping' or "
                         f"'bbox_used_for_cropping' (got keys {sorted(properties)}); re-run "
                         f"nnUNetv2_plan_and_preprocess") from err
    if num_slices < 1 or not (0 <= start < stop <= total):
        raise ValueError(f"case {case_id!r}: inconsistent slice geometry: {num_slices} preprocessed slices, "
                         f"crop [{start}, {stop}) of {total} slices")
    scale = (stop - start) / num_slices
    centres = start + (np.arange(num_slices) + 0.5) * scale  # slice centres in the uncropped scan
    index = np.clip(np.floor(centres).astype(int), 0, total - 1)
    return (index * partitions) // total


def partitions_for_cases(num_slices: Mapping[str, int], properties: Mapping[str, Mapping[str, Any]],
                         partitions: int) -> dict[str, np.ndarray]:
    """``preprocessed_slice_partitions`` for several cases at once."""
    return {case: preprocessed_slice_partitions(n, properties[case], partitions, case)
            for case, n in num_slices.items()}


def partition_counts(slice_partitions: Sequence[np.ndarray], partitions: int) -> np.ndarray:
    """How many slices fall in each partition, summed over cases (for logs and checks)."""
    counts = np.zeros(partitions, dtype=int)
    for p in slice_partitions:
        counts += np.bincount(p, minlength=partitions)
    return counts
