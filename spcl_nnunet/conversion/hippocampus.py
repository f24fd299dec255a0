"""Medical Segmentation Decathlon Task04_Hippocampus (MRI, 260 labeled cases) -> ``DatasetXXX_Hippocampus``.

Input: ``Task04_Hippocampus/`` or the folder holding it (see :mod:`spcl_nnunet.conversion.msd`:
cases from its ``dataset.json``, macOS ``._*`` junk skipped, original ids such as
``hippocampus_367`` kept). Labels: 0 background, 1 anterior, 2 posterior. Meta-label: slice position
only (S=3; no case-level meta-label). Split of the 260 labeled cases (``seed``): 223 train /
12 validation (``imagesTr``) / 25 test (``imagesTs``), the paper's sizes; labeled counts 1, 2, 4 x 3
random draws as folds. Images are written unchanged (nnU-Net's z-score normalisation for "MRI").
The official ``imagesTs`` (no labels) is not converted.
"""

from __future__ import annotations

from pathlib import Path

from spcl_nnunet.conversion.common import DatasetSpec
from spcl_nnunet.conversion.common import reject_options
from spcl_nnunet.conversion.msd import MSDTask, convert_task
from spcl_nnunet.data.splits import FoldTable

TASK = MSDTask(folder_name="Task04_Hippocampus", name="Hippocampus", modality={"0": "MRI"}, label_ids=(0, 1, 2),
               expected_cases=260)

SPEC = DatasetSpec(
    name="Hippocampus",
    description=("Medical Segmentation Decathlon Task04_Hippocampus, the 260 labeled MRI cases (imagesTs not "
                 "converted). Labels: anterior and posterior hippocampus. Split and labeled folds of SP-Con "
                 "(Peng et al., NeurIPS 2021): 223 train / 12 val / 25 test, 1, 2 or 4 labeled scans."),
    reference="Antonelli et al., The Medical Segmentation Decathlon, Nature Communications 2022; "
              "Vanderbilt University Medical Center",
    channel_names={"0": "MRI"},
    labels={"background": 0, "anterior": 1, "posterior": 2},
    slice_partitions=3,
    n_val_groups=12,
    n_test_groups=25,
    labeled_counts=(1, 2, 4),
)


def convert(input_dir: Path, raw_root: Path, dataset_id: int, *, overwrite: bool = False, seed: int = 0,
            spec: DatasetSpec = SPEC, **options) -> tuple[Path, FoldTable]:
    """Write ``raw_root/Dataset<ID>_Hippocampus``; ``spec`` replaces the paper's split sizes (tests)."""
    reject_options("Hippocampus", options)
    return convert_task(input_dir, raw_root, dataset_id, TASK, spec, overwrite=overwrite, seed=seed,
                        default_spec=SPEC)
