"""Medical Segmentation Decathlon Task09_Spleen (CT, 41 labeled cases) -> ``DatasetXXX_Spleen``.

Input: ``Task09_Spleen/`` or the folder holding it (see :mod:`spcl_nnunet.conversion.msd`: cases
from its ``dataset.json``, macOS ``._*`` junk skipped, original ids such as ``spleen_2`` kept).
Labels: 0 background, 1 spleen. Meta-label: slice position only (S=5; no case-level meta-label).

Split of the 41 labeled cases (``seed``): 34 train / 2 validation (``imagesTr``) / 5 test
(``imagesTs``); labeled counts 2, 4 x 3 random draws as folds. The paper reports 35/2/5, which adds
up to 42, one more than the 41 labeled cases of the release: validation and test keep the paper's
sizes and the training pool takes the remaining 34.

Intensities: the converter clips the written images to the paper's [-100, 400] HU window
(``intensity_clip``, recorded as ``"intensity_clip": [-100, 400]`` in dataset.json). nnU-Net's CT
normalisation ("CT" channel) then works on the clipped range as usual: it clips again to the
0.5-99.5 percentiles of the foreground voxels and z-scores with their mean/std, which on the clipped
images stays inside [-100, 400]. ``intensity_clip=None`` (script: ``--no-clip``) writes the HU
values unchanged. The official ``imagesTs`` (no labels) is not converted.
"""

from __future__ import annotations

from pathlib import Path

from spcl_nnunet.conversion.common import DatasetSpec
from spcl_nnunet.conversion.common import reject_options
from spcl_nnunet.conversion.msd import MSDTask, convert_task
from spcl_nnunet.data.splits import FoldTable

TASK = MSDTask(folder_name="Task09_Spleen", name="Spleen", modality={"0": "CT"}, label_ids=(0, 1),
               expected_cases=41)
INTENSITY_CLIP = (-100, 400)

SPEC = DatasetSpec(
    name="Spleen",
    description=("Medical Segmentation Decathlon Task09_Spleen, the 41 labeled CT cases (imagesTs not converted), "
                 "intensities clipped to [-100, 400] HU. Label: spleen. Split and labeled folds of SP-Con "
                 "(Peng et al., NeurIPS 2021): 34 train / 2 val / 5 test (the paper's 35/2/5 adds up to 42), "
                 "2 or 4 labeled scans."),
    reference="Antonelli et al., The Medical Segmentation Decathlon, Nature Communications 2022; "
              "Memorial Sloan Kettering Cancer Center",
    channel_names={"0": "CT"},
    labels={"background": 0, "spleen": 1},
    slice_partitions=5,
    n_val_groups=2,
    n_test_groups=5,
    labeled_counts=(2, 4),
)


def convert(input_dir: Path, raw_root: Path, dataset_id: int, *, overwrite: bool = False, seed: int = 0,
            spec: DatasetSpec = SPEC, intensity_clip: tuple[float, float] | None = INTENSITY_CLIP,
            **options) -> tuple[Path, FoldTable]:
    """Write ``raw_root/Dataset<ID>_Spleen``; ``spec`` replaces the paper's split sizes (tests),
    ``intensity_clip=None`` keeps the original HU values."""
    reject_options("Spleen", options)
    return convert_task(input_dir, raw_root, dataset_id, TASK, spec, overwrite=overwrite, seed=seed,
                        default_spec=SPEC, intensity_clip=intensity_clip)
