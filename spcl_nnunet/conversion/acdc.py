"""ACDC (Automated Cardiac Diagnosis Challenge, MICCAI 2017) -> ``DatasetXXX_ACDC``.

Accepted layouts of ``RAW_DIR`` (the folder the download was unpacked into)::

    RAW_DIR/training/patient001/...             (2017 challenge release)
    RAW_DIR/database/training/patient001/...    (re-release; testing/ then ships ground truth)
    RAW_DIR/<one folder>/training/... or RAW_DIR/<one folder>/database/training/...

``testing/`` (or ``database/testing/``) next to ``training/`` is only read with
``include_official_test``. Each patient folder holds ``Info.cfg`` (``ED: 1``, ``ES: 12``,
``Group``, ``Height``, ``NbFrame``, ``Weight`` lines), the cine file ``patientXXX_4d.nii.gz``
(never a case) and, for each frame named by ``ED``/``ES``, ``patientXXX_frameYY.nii.gz`` with its
ground truth ``patientXXX_frameYY_gt.nii.gz``.

Output: one case per (patient, phase), ids ``patient001_ED`` / ``patient001_ES``; labels kept as in
the download (0 background, 1 RV, 2 myocardium, 3 LV cavity); meta-labels ``patient`` (shared by
the two scans of a patient) and ``phase`` (``ED``/``ES``); slice partitions S = 3.

Split (the paper: 175 train / 8 val / 17 test of the 200 scans of the 100 training patients, at
random, without saying whether a patient's two scans stay together). Here the split is by patient,
both phases always on the same side: **4 validation patients (8 scans), 9 test patients (18 scans),
the remaining 87 patients (174 scans) form the training pool**. 17 test scans cannot be made of whole
patients; one test patient more and one training patient less (174/8/18) keeps the validation set
exactly as in the paper. Labeled counts 1, 2, 4, 8 (x 3 random draws) and "all" (the whole training
pool, a single fold): folds 0-2: 1 scan, 3-5: 2, 6-8: 4, 9-11: 8, 12: all 174. With a download of
fewer patients the same 4 + 9 patients are held out and "all" is the remaining pool.

The official testing patients (101-150) are not part of the paper's protocol. With
``include_official_test`` they are converted too, into ``imagesTs/labelsTs`` under ids
``official_patient101_ED`` etc. (ground truth required: the 2017 release has none, the re-release
has it), listed in ``dataset.json`` under ``official_test_cases`` and never in the folds' test list
(``spcl_folds.json`` ``test`` is only the paper-style test set).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import SimpleITK as sitk

from spcl_nnunet.conversion.common import (
    reject_options,
    ConversionError,
    DatasetSpec,
    SourceCase,
    finish_dataset,
    label_values,
    read_image_and_label,
    split_cases,
    write_case,
)
from spcl_nnunet.data.rawdataset import staged_dataset, target_folder
from spcl_nnunet.data.splits import FoldTable

SPEC = DatasetSpec(
    name="ACDC",
    description="ACDC cardiac cine MRI (MICCAI 2017): one scan per end-diastolic (ED) and end-systolic (ES) "
                "frame of each training patient. Labels: RV, LV myocardium, LV cavity. Split by patient.",
    reference="O. Bernard et al., Deep Learning Techniques for Automatic MRI Cardiac Multi-structures "
              "Segmentation and Diagnosis: Is the Problem Solved? IEEE TMI 37(11), 2018",
    channel_names={"0": "cineMRI"},
    labels={"background": 0, "RV": 1, "MYO": 2, "LV": 3},
    slice_partitions=3,
    n_val_groups=4,
    n_test_groups=9,
    labeled_counts=(1, 2, 4, 8),  # + "all": the whole training pool, added by convert()
    repeats=3,
)
PHASES = ("ED", "ES")
EXPECTED_PATIENTS = 100
LABEL_MAPPING = {0: 0, 1: 1, 2: 2, 3: 3}
OFFICIAL_PREFIX = "official_"
PATIENT_RE = re.compile(r"^patient\d{3}$")
LAYOUTS = ("RAW_DIR/training/patientXXX/ (+ testing/)",
           "RAW_DIR/database/training/patientXXX/ (+ database/testing/)",
           "either of these one folder below RAW_DIR")


def _layout_help() -> str:
    return "accepted layouts: " + "; ".join(LAYOUTS)


def find_root(raw_dir: Path) -> Path:
    """The folder that holds ``training/`` (and ``testing/``)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ConversionError(f"ACDC input folder {raw_dir} does not exist or is not a folder; {_layout_help()}")
    candidates = [raw_dir, raw_dir / "database"]
    for child in sorted(p for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))):
        if child.name not in ("training", "testing", "database"):
            candidates += [child, child / "database"]
    found = [c for c in candidates if (c / "training").is_dir()]
    if not found:
        raise ConversionError(f"no ACDC training/ folder found in {raw_dir}; {_layout_help()}")
    if len(found) > 1:
        raise ConversionError(f"several ACDC training/ folders found in {raw_dir}: "
                              f"{[str(c / 'training') for c in found]}; pass the one to convert as -i")
    return found[0]


def parse_info(path: Path) -> dict[str, str]:
    """``Info.cfg`` as {key: value} (lines ``ED: 1``, ``ES: 12``, ``Group: DCM``, ...)."""
    if not path.is_file():
        raise ConversionError(f"missing {path}: expected an ACDC Info.cfg with 'ED: <frame>' and 'ES: <frame>' lines")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise ConversionError(f"cannot read {path} as text ({err}): expected an ACDC Info.cfg") from err
    info = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def _frames(info_path: Path) -> dict[str, int]:
    info = parse_info(info_path)
    frames = {}
    for phase in PHASES:
        if phase not in info:
            raise ConversionError(f"{info_path} has no '{phase}:' line: expected 'ED: <frame>' and 'ES: <frame>' "
                                  f"(found keys {sorted(info)})")
        try:
            frames[phase] = int(info[phase])
        except ValueError:
            raise ConversionError(f"{info_path}: '{phase}: {info[phase]}' is not a frame number "
                                  f"(expected e.g. '{phase}: 1')") from None
        if frames[phase] < 1:
            raise ConversionError(f"{info_path}: '{phase}: {frames[phase]}' is not a frame number >= 1")
    if frames["ED"] == frames["ES"]:
        raise ConversionError(f"{info_path} names the same frame {frames['ED']} for ED and ES: expected two frames")
    return frames


def patient_cases(folder: Path, prefix: str = "", require_gt: bool = True) -> list[SourceCase]:
    """The ED and ES cases of one patient folder (files checked to exist, not read yet)."""
    patient = folder.name
    frames = _frames(folder / "Info.cfg")
    cases = []
    for phase in PHASES:
        image = folder / f"{patient}_frame{frames[phase]:02d}.nii.gz"
        label = folder / f"{patient}_frame{frames[phase]:02d}_gt.nii.gz"
        if not image.is_file():
            raise ConversionError(f"missing {image}: expected the {phase} frame {frames[phase]} named in "
                                  f"{folder / 'Info.cfg'}")
        if require_gt and not label.is_file():
            raise ConversionError(f"missing {label}: expected the ground truth of the {phase} frame {image.name}")
        cases.append(SourceCase(case_id=f"{prefix}{patient}_{phase}", image=image, label=label,
                                meta={"patient": patient, "phase": phase}, group=patient))
    return cases


def _patient_folders(folder: Path) -> list[Path]:
    patients = sorted(p for p in folder.iterdir() if p.is_dir() and PATIENT_RE.match(p.name))
    if not patients:
        raise ConversionError(f"{folder} holds no patientXXX folders: expected e.g. {folder / 'patient001'}/Info.cfg; "
                              f"{_layout_help()}")
    return patients


def collect(raw_dir: Path, include_official_test: bool = False) -> tuple[list[SourceCase], list[SourceCase]]:
    """(training cases, official testing cases) found under ``raw_dir``; files checked to exist."""
    root = find_root(raw_dir)
    training = [case for folder in _patient_folders(root / "training") for case in patient_cases(folder)]
    official: list[SourceCase] = []
    if include_official_test:
        testing = root / "testing"
        if not testing.is_dir():
            raise ConversionError(f"include_official_test: missing {testing}: expected the official testing "
                                  f"patients (patient101..150) next to {root / 'training'}")
        for folder in _patient_folders(testing):
            try:
                official += patient_cases(folder, prefix=OFFICIAL_PREFIX)
            except ConversionError as err:
                raise ConversionError(f"{err} (include_official_test needs the ground truth of the testing "
                                      f"patients: the 2017 release has none, the re-release ships it)") from None
        clash = {c.group for c in official} & {c.group for c in training}
        if clash:
            raise ConversionError(f"patient(s) {sorted(clash)[:5]} are in both {root / 'training'} and {testing}")
    return training, official


def _read_case(case: SourceCase) -> tuple[sitk.Image, object]:
    image, label = read_image_and_label(case)
    return image, label_values(label, case.label, LABEL_MAPPING)


def convert(input_dir: Path, raw_root: Path, dataset_id: int, *, overwrite: bool = False, seed: int = 0,
            include_official_test: bool = False, **options) -> tuple[Path, FoldTable]:
    """Convert an ACDC download into ``raw_root/Dataset<ID>_ACDC``; return (folder, fold table).

    Options of other converters (``options``) are an error, not silently ignored."""
    reject_options("ACDC", options)
    training, official = collect(Path(input_dir), include_official_test)
    n_patients = len({c.group for c in training})
    pool_patients = -(-max(SPEC.labeled_counts) // len(PHASES))
    needed = SPEC.n_val_groups + SPEC.n_test_groups + pool_patients
    if n_patients < needed:
        raise ConversionError(f"{find_root(Path(input_dir)) / 'training'} holds {n_patients} patients: the split "
                              f"needs at least {needed} ({SPEC.n_val_groups} validation + {SPEC.n_test_groups} test "
                              f"patients + {pool_patients} for {max(SPEC.labeled_counts)} labeled scans; the full "
                              f"download has 100)")
    if n_patients != EXPECTED_PATIENTS:
        warnings.warn(f"found {n_patients} ACDC training patients in {find_root(Path(input_dir)) / 'training'}, the "
                      f"paper uses {EXPECTED_PATIENTS}: the split keeps {SPEC.n_val_groups} validation / "
                      f"{SPEC.n_test_groups} test patients and the rest as training pool", stacklevel=2)
    train, val, test = split_cases(training, SPEC, seed)
    spec = replace(SPEC, labeled_counts=tuple(sorted(set(SPEC.labeled_counts) | {len(train)})))
    test_set = set(test) | {c.case_id for c in official}
    extra = {"official_test_cases": sorted(c.case_id for c in official)} if include_official_test else None
    with staged_dataset(raw_root, dataset_id, SPEC.name, overwrite) as folder:
        for case in training + official:
            image, label = _read_case(case)
            write_case(folder, case.case_id, image, label, test=case.case_id in test_set)
        training_cases = [c for c in training if c.case_id not in test_set]
        table = finish_dataset(folder, spec, training_cases, val, train, test, seed, extra_dataset_json=extra)
    return target_folder(raw_root, dataset_id, SPEC.name), table
