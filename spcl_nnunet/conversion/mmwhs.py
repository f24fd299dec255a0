"""MM-WHS 2017, CT part (20 training subjects) -> ``DatasetXXX_MMWHS``.

Input (``RAW_DIR`` is the unpacked download, or its ``ct_train/`` folder itself)::

    ct_train/ct_train_1001_image.nii.gz   ct_train/ct_train_1001_label.nii.gz   ... 1001..1020

Output: one case per subject, ``mmwhs_1001`` ..., meta-label ``patient`` ("1001"), slice
partitions S=7. Labels: the paper's four classes LVM (205) -> 1, LAC (420) -> 2, LVC (500) -> 3,
AA (820) -> 4; the other structures of MM-WHS (550 right atrium, 600 right ventricle,
850 pulmonary artery) become background. Split (patients, ``seed``): 10 train / 4 validation
(``imagesTr``) / 6 test (``imagesTs``); labeled counts 1, 2 x 3 random draws as folds.

Any other label value is an error naming the file (a label map is expected to hold only the
seven MM-WHS values). Some copies of MM-WHS are reported to hold a few stray voxels with values
such as 421: pass ``unknown_labels_as_background=True`` (script:
``dataset_conversion/convert_mmwhs.py --unknown-labels-as-background``) to turn them into
background after checking them; each affected file is then reported with a warning.

Images are written unchanged (CT in HU; nnU-Net's CT normalisation applies), with the label in
the image's geometry; the slice axis is the one nnU-Net's ``transpose_forward`` picks (the
converter does not reorient). ``ct_test/`` (no labels) is not converted.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from spcl_nnunet.conversion.common import (ConversionError, DatasetSpec, SourceCase, finish_dataset, label_values,
                                           read_image_and_label, reject_options, split_cases, write_case)
from spcl_nnunet.data.rawdataset import staged_dataset, target_folder
from spcl_nnunet.data.splits import FoldTable, make_fold_table

SPEC = DatasetSpec(
    name="MMWHS",
    description=("MM-WHS 2017 CT training scans (ct_train, 20 subjects). Labels: LV myocardium (205), left atrium "
                 "blood cavity (420), LV blood cavity (500), ascending aorta (820); the other structures (550, 600, "
                 "850) are background. Split and labeled folds of SP-Con (Peng et al., NeurIPS 2021): "
                 "10 train / 4 val / 6 test subjects, 1 or 2 labeled scans."),
    reference="Zhuang & Shen, Multi-scale patch and multi-modality atlases for whole heart segmentation of MRI, "
              "Medical Image Analysis 2016; MM-WHS challenge 2017",
    channel_names={"0": "CT"},
    labels={"background": 0, "LVM": 1, "LAC": 2, "LVC": 3, "AA": 4},
    slice_partitions=7,
    n_val_groups=4,
    n_test_groups=6,
    labeled_counts=(1, 2),
)

#: MM-WHS label value -> nnU-Net label (the paper's four classes; other known structures -> background)
LABEL_MAPPING = {0: 0, 205: 1, 420: 2, 500: 3, 820: 4, 550: 0, 600: 0, 850: 0}
EXPECTED_SUBJECTS = 20
SUBFOLDER = "ct_train"
_IMAGE = re.compile(r"^ct_train_(\d+)_image\.nii\.gz$")
_LABEL = re.compile(r"^ct_train_(\d+)_label\.nii\.gz$")


def _listing(folder: Path) -> list[Path]:
    """Entries of ``folder`` without macOS ``._*`` junk."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("._"))


def find_ct_train(input_dir: Path) -> Path:
    """The folder holding ``ct_train_XXXX_image.nii.gz``: ``input_dir`` itself, ``input_dir/ct_train``
    or ``input_dir/<one folder>/ct_train``."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise ConversionError(f"{input_dir} is not a folder: expected the unpacked MM-WHS download "
                              f"(a folder holding {SUBFOLDER}/ct_train_1001_image.nii.gz ...)")
    candidates = [input_dir, input_dir / SUBFOLDER]
    candidates += [p / SUBFOLDER for p in _listing(input_dir) if p.is_dir()]
    for folder in candidates:
        if folder.is_dir() and any(_IMAGE.match(p.name) for p in _listing(folder)):
            return folder
    raise ConversionError(f"no MM-WHS CT training scans found in {input_dir}: expected "
                          f"{SUBFOLDER}/ct_train_1001_image.nii.gz and ct_train_1001_label.nii.gz ... "
                          f"(or those files directly in {input_dir})")


def find_cases(input_dir: Path) -> list[SourceCase]:
    """One :class:`SourceCase` per ``ct_train_XXXX_image.nii.gz`` (its label must be there)."""
    folder = find_ct_train(input_dir)
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for path in _listing(folder):
        if match := _IMAGE.match(path.name):
            images[match.group(1)] = path
        elif match := _LABEL.match(path.name):
            labels[match.group(1)] = path
    orphans = sorted(set(labels) - set(images))
    if orphans:
        expected = folder / f"ct_train_{orphans[0]}_image.nii.gz"
        raise ConversionError(f"{labels[orphans[0]]} has no image: expected {expected}")
    cases = []
    for subject in sorted(images, key=lambda s: (int(s), s)):
        label = labels.get(subject)
        if label is None:
            raise ConversionError(f"missing label file {folder / f'ct_train_{subject}_label.nii.gz'} for image "
                                  f"{images[subject]}")
        cases.append(SourceCase(case_id=f"mmwhs_{subject}", image=images[subject], label=label,
                                meta={"patient": subject}, group=subject))
    return cases


def _label_array(label, path: Path, unknown_as_background: bool):
    try:
        return label_values(label, path, LABEL_MAPPING)
    except ConversionError as err:
        if "unexpected label value" not in str(err):
            raise
        if not unknown_as_background:
            raise ConversionError(f"{err} (the seven MM-WHS structures); to turn other values into background, "
                                  f"run dataset_conversion/convert_mmwhs.py with --unknown-labels-as-background "
                                  f"(unknown_labels_as_background=True)") from err
        warnings.warn(f"{err}; mapped to background (unknown_labels_as_background)", stacklevel=3)
        return label_values(label, path, LABEL_MAPPING, keep_others_as_background=True)


def convert(input_dir: Path, raw_root: Path, dataset_id: int, *, overwrite: bool = False, seed: int = 0,
            spec: DatasetSpec = SPEC, unknown_labels_as_background: bool = False, **options) -> tuple[Path, FoldTable]:
    """Write ``raw_root/Dataset<ID>_MMWHS`` from the MM-WHS CT download in ``input_dir``.

    ``spec`` replaces the paper's split sizes (tests); returns the dataset folder and its folds."""
    reject_options("MMWHS", options)
    cases = find_cases(input_dir)
    if spec is SPEC and len(cases) != EXPECTED_SUBJECTS:
        warnings.warn(f"found {len(cases)} MM-WHS CT training subjects in {find_ct_train(input_dir)}, the paper uses "
                      f"{EXPECTED_SUBJECTS}: the split keeps {spec.n_val_groups} val / {spec.n_test_groups} test "
                      f"subjects and trains on the rest", stacklevel=2)
    train, val, test = split_cases(cases, spec, seed)
    make_fold_table(train, val, spec.labeled_counts, spec.repeats, seed, test=test)  # fail before writing
    test_ids = set(test)
    with staged_dataset(raw_root, dataset_id, spec.name, overwrite) as tmp:
        for case in cases:
            image, label = read_image_and_label(case)
            write_case(tmp, case.case_id, image, _label_array(label, case.label, unknown_labels_as_background),
                       test=case.case_id in test_ids)
        training = [case for case in cases if case.case_id not in test_ids]
        table = finish_dataset(tmp, spec, training, val, train, test, seed,
                               {"source_label_values": {"LVM": 205, "LAC": 420, "LVC": 500, "AA": 820}})
    return target_folder(raw_root, dataset_id, spec.name), table
