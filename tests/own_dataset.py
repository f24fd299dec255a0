"""A small dataset in plain nnU-Net raw format, as a team would have it, for the own-dataset tests.

Case ids of the team's own naming (``sub-03_ED``: subject and cardiac phase), real headers
(anisotropic spacing, an oblique direction, an odd number of slices, an origin away from 0), a
chosen file ending, labels in ``labelsTr``; label-less scans in a separate folder
(``unlabeled_scans/``) with their own names; test scans in ``imagesTs``/``labelsTs``. No sidecar:
nothing of the plugin's. Images are the synthetic generator's cardiac scans at 32 x 32 px.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spcl_nnunet.synthetic.profiles import DEFAULT
from spcl_nnunet.synthetic.render import LABELS, draw_patient, render_scan

DATASET_ID = 501
DATASET_NAME = "Dataset501_Heart"
SPACING = (1.56, 1.56, 6.5)          # x, y, z (mm): anisotropic
ANGLE = math.radians(30)
DIRECTION = (math.cos(ANGLE), -math.sin(ANGLE), 0.0, math.sin(ANGLE), math.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)
ORIGIN = (-40.5, 12.25, 88.0)


def write_image(array: np.ndarray, path: Path, spacing=SPACING, direction=DIRECTION) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(ORIGIN)
    sitk.WriteImage(image, str(path), True)


def scan(subject: int, phase: str, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scan of ``subject`` (odd slice counts: 5 or 7)."""
    slices = 5 + 2 * (subject % 2)
    anatomy = draw_patient(np.random.default_rng([11, subject]), np.random.default_rng([11, subject, 7]),
                           (size, size), (slices, slices), DEFAULT)
    image, label = render_scan(anatomy, phase, np.random.default_rng([11, subject, phase == "ES"]))
    return image.astype(np.float32), label.astype(np.uint8)


def make_plain_dataset(root: Path, file_ending: str = ".nii.gz", labeled_subjects: int = 6,
                       unlabeled_subjects: int = 2, test_subjects: int = 2) -> tuple[Path, Path]:
    """``root/nnUNet_raw/Dataset501_Heart`` (labeled ED/ES scans of ``labeled_subjects`` subjects in
    imagesTr/labelsTr, ``test_subjects`` in imagesTs/labelsTs) and ``root/unlabeled_scans``
    (ED/ES scans of ``unlabeled_subjects`` further subjects, no label, same naming);
    returns (raw dataset folder, unlabeled folder)."""
    raw = root / "nnUNet_raw" / DATASET_NAME
    unlabeled = root / "unlabeled_scans"
    for folder in (raw / "imagesTr", raw / "labelsTr", raw / "imagesTs", raw / "labelsTs", unlabeled):
        folder.mkdir(parents=True)
    subject = 0
    for count, images, labels in ((labeled_subjects, "imagesTr", "labelsTr"), (test_subjects, "imagesTs", "labelsTs")):
        for _ in range(count):
            subject += 1
            for phase in ("ED", "ES"):
                image, label = scan(subject, phase)
                case = f"sub-{subject:02d}_{phase}"
                write_image(image, raw / images / f"{case}_0000{file_ending}")
                write_image(label, raw / labels / f"{case}{file_ending}")
    for n in range(unlabeled_subjects):
        subject += 1
        for phase in ("ED", "ES"):
            image, _ = scan(subject, phase)
            write_image(image, unlabeled / f"sub-{subject:02d}_{phase}{file_ending}")
    dataset = {"channel_names": {"0": "cineMRI"}, "labels": dict(LABELS),
               "numTraining": 2 * labeled_subjects, "file_ending": file_ending, "name": "Heart"}
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return raw, unlabeled
