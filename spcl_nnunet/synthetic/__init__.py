"""Embedded synthetic short-axis cine-MRI dataset that looks like ACDC.

:func:`generate_synthetic_dataset` writes a complete nnU-Net raw dataset
``Dataset{ID:03d}_{profile.dataset_name}`` (images, labels, ``dataset.json``,
``meta_labels.json``, ``splits_final.json`` and ``spcl_folds.json``). Every patient has an ED
and an ES scan. How much patients and scanners vary is set by a profile (``profiles.py``):
``default`` (the original, regular anatomy) or ``acdc`` (calibrated to ACDC's difficulty).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from spcl_nnunet.data.metalabels import MetaLabels, save_meta_labels
from spcl_nnunet.data.rawdataset import staged_dataset, target_folder
from spcl_nnunet.data.splits import make_fold_table, split_groups, write_fold_files
from spcl_nnunet.synthetic.profiles import ACDC, DEFAULT, PROFILES, Profile, get_profile
from spcl_nnunet.synthetic.render import LABELS, SLICE_PARTITIONS, Patient, draw_patient, render_scan

__all__ = ["ACDC", "DATASET_NAME", "DEFAULT", "LABELS", "PROFILES", "Profile", "generate_synthetic_dataset",
           "get_profile"]

DATASET_NAME = DEFAULT.dataset_name
PHASES = ("ED", "ES")
FILE_ENDING = ".nii.gz"


def _write_volume(array: np.ndarray, path: Path, p: Patient, spacing: float) -> None:
    volume = sitk.GetImageFromArray(array)
    volume.SetSpacing((spacing, spacing, p.thickness))
    volume.SetOrigin(p.origin)
    volume.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(volume, str(path), True)
def _check_arguments(dataset_id: int, n_patients: int, seed: int, n_val_patients: int, n_test_patients: int,
                     image_size: tuple[int, int], pixel_spacing: float, slices: tuple[int, int],
                     labeled_counts: Sequence[int], profile: Profile) -> None:
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset_id must be in 1..999, got {dataset_id}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_val_patients < 0 or n_test_patients < 0:
        raise ValueError(f"n_val_patients and n_test_patients must be >= 0, got {n_val_patients}, {n_test_patients}")
    if not labeled_counts or min(labeled_counts) < 1:
        raise ValueError(f"labeled_counts must be positive scan counts, got {list(labeled_counts)}")
    minimum = profile.minimum_patients(n_val_patients, n_test_patients, tuple(labeled_counts))
    if n_patients < minimum:
        raise ValueError(f"{n_patients} patients are too few for the '{profile.name}' profile: {n_val_patients} "
                         f"validation + {n_test_patients} test patients are set aside and the largest labeled "
                         f"count, {max(labeled_counts)} scans, needs {minimum - n_val_patients - n_test_patients} "
                         f"more training patient(s) (2 scans each): use at least {minimum} patients")
    if len(image_size) != 2 or min(image_size) < 32:
        raise ValueError(f"image_size must be (height, width), each >= 32, got {image_size}")
    if pixel_spacing <= 0:
        raise ValueError(f"pixel_spacing must be > 0, got {pixel_spacing}")
    if len(slices) != 2 or not 3 <= slices[0] <= slices[1]:
        raise ValueError(f"slices must be (min, max) with 3 <= min <= max, got {slices}")


def generate_synthetic_dataset(raw_root: str | os.PathLike[str], dataset_id: int, n_patients: int | None = None,
                               seed: int = 0, *, profile: str | Profile = "default",
                               n_val_patients: int | None = None, n_test_patients: int | None = None,
                               image_size: tuple[int, int] | None = None, pixel_spacing: float = 1.5,
                               slices: tuple[int, int] | None = None, labeled_counts: Sequence[int] | None = None,
                               repeats: int = 3, splits_per_count: Mapping[int, int] | None = None,
                               overwrite: bool = False) -> Path:
    """Write ``raw_root/Dataset{ID:03d}_{profile.dataset_name}`` and return its path.

    Arguments left at None take the profile's defaults (``default``: 16 patients, 2 validation
    and 3 test patients, 96x96 px, 8-12 slices, labeled counts 1, 2, 4; ``acdc``: see
    ``profiles.ACDC``). Patients are split at patient level into train/val/test with
    :func:`spcl_nnunet.data.splits.split_groups`; train and val scans go to imagesTr/labelsTr, test
    scans to imagesTs/labelsTs. The folder is built in a temporary sibling and renamed into
    place; an existing target is refused unless ``overwrite``. Same arguments, same files.
    Each labeled count gets ``repeats`` splits, except where ``splits_per_count`` (default: the
    profile's, for the counts in use; ``acdc``: 8 at 1 labeled scan, 4 at 2) says otherwise.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    n_patients = profile.n_patients if n_patients is None else int(n_patients)
    n_val_patients = profile.n_val_patients if n_val_patients is None else int(n_val_patients)
    n_test_patients = profile.n_test_patients if n_test_patients is None else int(n_test_patients)
    image_size = profile.image_size if image_size is None else image_size
    slices = profile.slices if slices is None else slices
    labeled_counts = profile.labeled_counts if labeled_counts is None else tuple(labeled_counts)
    _check_arguments(dataset_id, n_patients, seed, n_val_patients, n_test_patients, image_size,
                     pixel_spacing, slices, labeled_counts, profile)
    image_size = (int(image_size[0]), int(image_size[1]))
    patients = [f"patient{i + 1:03d}" for i in range(n_patients)]
    groups = {patient: [f"{patient}_{phase}" for phase in PHASES] for patient in patients}
    train, val, test = split_groups(groups, n_val_patients, n_test_patients, seed)
    if splits_per_count is None:
        splits_per_count = {c: n for c, n in profile.splits_per_count if c in labeled_counts}
    table = make_fold_table(train, val, labeled_counts, repeats, seed, test=test, splits_per_count=splits_per_count)
    test_set = set(test)

    name = profile.dataset_name
    with staged_dataset(raw_root, dataset_id, name, overwrite) as tmp:
        for index, patient in enumerate(patients):
            anatomy = draw_patient(np.random.default_rng([seed, index]), np.random.default_rng([seed, index, 7]),
                                   image_size, slices, profile)
            for phase_index, phase in enumerate(PHASES):
                case = f"{patient}_{phase}"
                image, label = render_scan(anatomy, phase, np.random.default_rng([seed, index, phase_index]))
                suffix = "Ts" if case in test_set else "Tr"
                _write_volume(image, tmp / f"images{suffix}" / f"{case}_0000{FILE_ENDING}", anatomy, pixel_spacing)
                _write_volume(label, tmp / f"labels{suffix}" / f"{case}{FILE_ENDING}", anatomy, pixel_spacing)
        training = sorted(train + val)
        description = ("Synthetic short-axis cine MRI in the style of ACDC (ED and ES scan per patient; "
                       "slice 0 is basal). Labels: RV, LV myocardium, LV blood pool.")
        reference = f"spcl-nnunet synthetic generator, seed {seed}"
        if profile.name != DEFAULT.name:
            description += f" Profile '{profile.name}': {profile.description}."
            reference += f", profile {profile.name}"
        # nnU-Net's writer, into the staging folder; it converts the dicts it is given in place
        generate_dataset_json(str(tmp), {"0": "cineMRI"}, dict(LABELS), len(training), FILE_ENDING, dataset_name=name,
                              description=description, reference=reference, license="synthetic images, no source data",
                              converted_by="spcl_nnunet synthetic")
        cases = {case: {"patient": case.rsplit("_", 1)[0], "phase": case.rsplit("_", 1)[1]} for case in training}
        save_meta_labels(MetaLabels(slice_partitions=SLICE_PARTITIONS, cases=cases, unlabeled=[]), tmp)
        write_fold_files(tmp, table)
    return target_folder(raw_root, dataset_id, name)
