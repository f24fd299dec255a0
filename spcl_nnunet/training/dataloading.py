"""nnU-Net data loading for contrastive batches: m scans x one slice per partition, two views.

``ContrastiveDataLoader`` is an ``nnUNetDataLoader``: it reads nnU-Net's preprocessed cases,
crops in-plane patches the way nnU-Net does and runs each view through nnU-Net's own
augmentation pipeline, in nnU-Net's background workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetBaseDataset
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from threadpoolctl import threadpool_limits

from spcl_nnunet.contrastive.sampling import draw_meta_batch, meta_label_tensor_codes


def case_slice_counts(dataset: nnUNetBaseDataset) -> tuple[dict[str, int], dict[str, dict]]:
    """Number of preprocessed slices (first spatial axis) and properties of every case."""
    counts, properties = {}, {}
    for case in dataset.identifiers:
        data, _, _, props = dataset.load_case(case)
        counts[case] = int(data.shape[1])
        properties[case] = props
    return counts, properties


class ContrastiveDataLoader(nnUNetDataLoader):
    """Batches ``{'data': (V*N, C, *patch), 'meta': {key: (N,) int64}, 'keys': [...]}``.

    Rows of ``data`` are view-major (row ``v*N + b`` is view ``v`` of slice ``b``), the order
    ``spcl_nnunet.losses`` expects. ``meta`` holds ``position`` (slice partition on nnU-Net's
    2d axis) and each case-level meta-label in ``case_codes``.
    """

    def __init__(self, data: nnUNetBaseDataset, num_scans: int, slice_partitions: Mapping[str, np.ndarray],
                 partitions: int, case_codes: Mapping[str, Mapping[str, int]],
                 patch_size: Sequence[int], final_patch_size: Sequence[int], label_manager: LabelManager,
                 transforms=None, num_views: int = 2, one_slice_per_partition: bool = True):
        if len(final_patch_size) != 2:
            raise ValueError(f"contrastive batches are 2D slices; got patch size {tuple(final_patch_size)} "
                             f"(use nnU-Net's 2d configuration)")
        super().__init__(data, num_scans * partitions, patch_size, final_patch_size, label_manager,
                         oversample_foreground_percent=0.0, transforms=transforms)
        self.num_scans, self.partitions, self.num_views = num_scans, partitions, num_views
        self.slice_partitions = {k: np.asarray(v) for k, v in slice_partitions.items()}
        self.case_codes = {k: dict(v) for k, v in case_codes.items()}
        self.one_slice_per_partition = one_slice_per_partition
        self.case_list = list(data.identifiers)

    def _crop_slice(self, data: np.ndarray, seg: np.ndarray, slice_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        data_slice, seg_slice = data[:, slice_index:slice_index + 1], seg[:, slice_index:slice_index + 1]
        bbox_lbs, bbox_ubs = self.get_bbox(data_slice.shape[1:], False, None)
        bbox = [[lo, hi] for lo, hi in zip(bbox_lbs, bbox_ubs)]
        image = torch.from_numpy(crop_and_pad_nd(data_slice, bbox, 0)).float()[:, 0]
        label = torch.from_numpy(crop_and_pad_nd(seg_slice, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)[:, 0]
        return image, label

    def generate_train_batch(self) -> dict:
        draws = draw_meta_batch(np.random, self.slice_partitions, self.case_list, self.num_scans,
                                self.partitions, self.one_slice_per_partition)
        n = len(draws)
        data_all = None
        cache: dict[str, tuple] = {}
        with torch.no_grad(), threadpool_limits(limits=1, user_api=None):
            for b, draw in enumerate(draws):
                if draw.case not in cache:
                    cache[draw.case] = self._data.load_case(draw.case)[:2]
                data, seg = cache[draw.case]
                image, label = self._crop_slice(data, seg, draw.slice_index)
                for v in range(self.num_views):
                    view = self.transforms(image=image.clone(), segmentation=label.clone())["image"] \
                        if self.transforms is not None else image
                    if data_all is None:
                        data_all = torch.empty((self.num_views * n, *view.shape), dtype=torch.float32)
                    data_all[v * n + b] = view
        meta = {k: torch.from_numpy(v) for k, v in meta_label_tensor_codes(draws, self.case_codes).items()}
        return {"data": data_all, "meta": meta, "keys": [d.case for d in draws],
                "slices": [d.slice_index for d in draws]}


def wrap_in_augmenter(loader, pin_memory: bool, validation: bool = False):
    """Run a loader in nnU-Net's background workers (``nnUNet_n_proc_DA`` of them), as nnU-Net does."""
    allowed = get_allowed_n_proc_DA()
    if allowed == 0:
        return SingleThreadedAugmenter(loader, None)
    if validation:
        return NonDetMultiThreadedAugmenter(loader, None, max(1, allowed // 2), max(3, allowed // 4),
                                            seeds=None, pin_memory=pin_memory, wait_time=0.002)
    return NonDetMultiThreadedAugmenter(loader, None, allowed, max(6, allowed // 2),
                                        seeds=None, pin_memory=pin_memory, wait_time=0.002)
