"""Meta-label aware mini-batches for contrastive training (paper, Sec. "Mini-batches").

ACDC-style: sample ``m`` scans, draw one slice per partition from each (S=3 -> 3m slices).
Other datasets in the paper: slices drawn without regard to meta-labels. Each slice is later
augmented twice (two views) by the data loader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def scans_per_meta_batch(batch_size: int, partitions: int) -> tuple[int, str | None]:
    """(scans m, note) of a meta-label batch sized from an image batch: m = batch_size // S partitions.
    The note is None unless the batch is smaller than the partitions: then m falls back to 1, i.e. S
    slices per view, more images than ``batch_size``, and the note says so (for the trainer's log)."""
    if batch_size < 1 or partitions < 1:
        raise ValueError(f"batch size and slice partitions must be >= 1, got {batch_size} and {partitions}")
    if batch_size >= partitions:
        return batch_size // partitions, None
    return 1, (f"meta-label batch: the batch size {batch_size} is smaller than the {partitions} slice partitions, "
               f"so each batch holds 1 scan x {partitions} slices per view ({partitions} images, not {batch_size}); "
               f"set num_scans_per_batch (a schedule key) to choose the number of scans")


@dataclass(frozen=True)
class SliceDraw:
    case: str
    slice_index: int
    partition: int


def draw_meta_batch(rng: np.random.RandomState,
                    slice_partitions: Mapping[str, np.ndarray], cases: Sequence[str], num_scans: int,
                    partitions: int, one_slice_per_partition: bool = True) -> list[SliceDraw]:
    """Choose ``num_scans`` scans (without replacement when the pool allows) and from each
    ``partitions`` slices: one per partition when ``one_slice_per_partition`` (a partition a
    scan lacks, e.g. a scan with fewer slices than partitions, is filled with a random slice
    of that scan, keeping its true partition), else uniformly at random.

    ``rng`` is a ``np.random.RandomState`` or the ``np.random`` module itself: data-loader
    workers use the global state, which batchgenerators seeds differently in every worker.
    """
    if num_scans < 1:
        raise ValueError(f"num_scans must be >= 1, got {num_scans}")
    if len(cases) == 0:
        raise ValueError("cannot draw a contrastive batch from an empty pool of cases")
    replace = len(cases) < num_scans
    chosen = rng.choice(len(cases), num_scans, replace=replace)
    draws: list[SliceDraw] = []
    for c in chosen:
        case = cases[int(c)]
        parts = np.asarray(slice_partitions[case])
        for p in range(partitions):
            candidates = np.flatnonzero(parts == p) if one_slice_per_partition else np.empty(0, int)
            if candidates.size == 0:
                candidates = np.arange(parts.size)
            s = int(candidates[rng.randint(candidates.size)])
            draws.append(SliceDraw(case, s, int(parts[s])))
    return draws


def meta_label_tensor_codes(draws: Sequence[SliceDraw], case_codes: Mapping[str, Mapping[str, int]]
                            ) -> dict[str, np.ndarray]:
    """Integer meta-labels of each drawn slice: ``position`` (its partition) plus every
    case-level meta-label in ``case_codes`` (key -> case -> class)."""
    out = {"position": np.array([d.partition for d in draws], dtype=np.int64)}
    for key, codes in case_codes.items():
        out[key] = np.array([codes[d.case] for d in draws], dtype=np.int64)
    return out
