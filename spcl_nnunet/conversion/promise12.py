"""PROMISE12 (prostate T2 MRI segmentation challenge, MICCAI 2012) -> ``DatasetXXX_PROMISE12``.

Accepted layouts of ``RAW_DIR``: it holds ``TrainingData_Part1``, ``TrainingData_Part2`` and
``TrainingData_Part3`` (all three are required: a missing part is an incomplete download), or it is
the parent of the one folder that holds them. Each part holds MetaImage pairs
``CaseXX.mhd/.raw`` (image) and ``CaseXX_segmentation.mhd/.raw`` (labels 0 background, 1 prostate);
``Case00..Case49`` across the parts. ``TestData/CaseXX.mhd`` (next to the parts; no segmentations)
is only read with ``with_unlabeled``.

Output: case ids ``Case00`` ... (the download's names), images and labels with their geometry
(spacing, origin, direction) as NIfTI; meta-label ``patient`` = the case id (each case is its own
patient); slice partitions S = 5. Split as in the paper: 4 validation and 6 test cases at random,
the remaining 40 form the training pool; labeled counts 3, 5, 7 (x 3 random draws): folds 0-2: 3
scans, 3-5: 5, 6-8: 7.

``with_unlabeled``: the 30 ``TestData`` cases are added to ``imagesTr`` as ``unlabeled_Case00`` ...
with an all-zero placeholder label, listed under ``unlabeled`` in ``meta_labels.json`` (meta-label
``patient`` = the case id, distinct from the training ``Case00``). They take part in SP-Con
pre-training only: never validation, test or labeled scans, and not in the fold table's training
pool.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path


from spcl_nnunet.conversion.common import (
    reject_options,
    ConversionError,
    DatasetSpec,
    SourceCase,
    finish_dataset,
    label_values,
    read_image,
    read_image_and_label,
    split_cases,
    write_case,
)
from spcl_nnunet.data.rawdataset import staged_dataset, target_folder
from spcl_nnunet.data.splits import FoldTable

SPEC = DatasetSpec(
    name="PROMISE12",
    description="PROMISE12 prostate T2-weighted MRI (MICCAI 2012 grand challenge), 50 training cases. "
                "Label: prostate.",
    reference="G. Litjens et al., Evaluation of prostate segmentation algorithms for MRI: the PROMISE12 "
              "challenge, Medical Image Analysis 18(2), 2014",
    channel_names={"0": "T2"},
    labels={"background": 0, "prostate": 1},
    slice_partitions=5,
    n_val_groups=4,
    n_test_groups=6,
    labeled_counts=(3, 5, 7),
    repeats=3,
)
PARTS = ("TrainingData_Part1", "TrainingData_Part2", "TrainingData_Part3")
TEST_FOLDER = "TestData"
EXPECTED_CASES = 50
UNLABELED_PREFIX = "unlabeled_"
LABEL_MAPPING = {0: 0, 1: 1}
CASE_RE = re.compile(r"^(Case\d+)\.mhd$")
SEGMENTATION_SUFFIX = "_segmentation"
LAYOUT_HELP = (f"accepted layouts: RAW_DIR/{{{','.join(PARTS)}}}/CaseXX.mhd (+ RAW_DIR/{TEST_FOLDER}), "
               f"or the same one folder below RAW_DIR")


def find_root(raw_dir: Path) -> Path:
    """The folder that holds the ``TrainingData_PartN`` folders."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ConversionError(f"PROMISE12 input folder {raw_dir} does not exist or is not a folder; {LAYOUT_HELP}")

    def parts_in(folder: Path) -> list[str]:
        return [p for p in PARTS if (folder / p).is_dir()]

    candidates = [raw_dir] + sorted(p for p in raw_dir.iterdir() if p.is_dir() and p.name not in PARTS
                                    and not p.name.startswith((".", "__MACOSX")))
    found = [c for c in candidates if parts_in(c)]
    if not found:
        raise ConversionError(f"no PROMISE12 TrainingData_Part1..3 folders found in {raw_dir}; {LAYOUT_HELP}")
    if len(found) > 1:
        raise ConversionError(f"PROMISE12 training parts found in several folders {[str(f) for f in found]}; "
                              f"pass the one to convert as -i")
    root = found[0]
    missing = [p for p in PARTS if p not in parts_in(root)]
    if missing:
        raise ConversionError(f"{root} lacks {missing}: expected all of {list(PARTS)} (an incomplete download?)")
    return root


def check_data_file(header: Path) -> None:
    """A MetaImage header's ``ElementDataFile`` (e.g. ``Case00.raw``) must exist next to it."""
    if not header.is_file():
        raise ConversionError(f"missing file {header}")
    try:
        text = header.read_text(encoding="latin-1")
    except OSError as err:
        raise ConversionError(f"cannot read {header} ({err}): expected a MetaImage header") from err
    lines = [line.split("=", 1) for line in text.splitlines() if "=" in line]
    fields = {key.strip(): value.strip() for key, value in lines}
    if "ElementDataFile" not in fields:
        raise ConversionError(f"{header} has no ElementDataFile line: expected a MetaImage header "
                              f"(e.g. 'ElementDataFile = {header.stem}.raw')")
    name = fields["ElementDataFile"]
    if name in ("LOCAL", "LIST") or " " in name or "%" in name:
        return  # data in the header file itself, or a file list / pattern: SimpleITK checks those
    data = header.parent / name
    if not data.is_file():
        raise ConversionError(f"missing {data}: {header} names it as its ElementDataFile (expected the .raw "
                              f"voxel file next to the .mhd header)")


def _cases_in(folder: Path) -> list[str]:
    return sorted(m.group(1) for p in folder.iterdir() if p.is_file() and (m := CASE_RE.match(p.name)))


def collect(raw_dir: Path, with_unlabeled: bool = False) -> tuple[list[SourceCase], list[SourceCase]]:
    """(training cases, TestData cases) found under ``raw_dir``; headers and data files checked."""
    root = find_root(raw_dir)
    training: list[SourceCase] = []
    where: dict[str, Path] = {}
    for part in PARTS:
        folder = root / part
        for name in _cases_in(folder):
            if name in where:
                raise ConversionError(f"{name} is in both {where[name]} and {folder}: expected each case once")
            where[name] = folder
            image = folder / f"{name}.mhd"
            label = folder / f"{name}{SEGMENTATION_SUFFIX}.mhd"
            if not label.is_file():
                raise ConversionError(f"missing {label}: expected the segmentation of {image}")
            for header in (image, label):
                check_data_file(header)
            training.append(SourceCase(case_id=name, image=image, label=label, meta={"patient": name}, group=name))
    if not training:
        raise ConversionError(f"no CaseXX.mhd images in {[str(root / p) for p in PARTS]}; {LAYOUT_HELP}")
    unlabeled: list[SourceCase] = []
    if with_unlabeled:
        folder = root / TEST_FOLDER
        if not folder.is_dir():
            raise ConversionError(f"with_unlabeled: missing {folder}: expected the PROMISE12 TestData folder "
                                  f"(CaseXX.mhd without segmentations) next to {root / PARTS[0]}")
        for name in _cases_in(folder):
            image = folder / f"{name}.mhd"
            check_data_file(image)
            case_id = f"{UNLABELED_PREFIX}{name}"
            unlabeled.append(SourceCase(case_id=case_id, image=image, label=None, meta={"patient": case_id},
                                        group=case_id))
        if not unlabeled:
            raise ConversionError(f"with_unlabeled: {folder} holds no CaseXX.mhd images")
    return sorted(training, key=lambda c: c.case_id), unlabeled


def convert(input_dir: Path, raw_root: Path, dataset_id: int, *, overwrite: bool = False, seed: int = 0,
            with_unlabeled: bool = False, **options) -> tuple[Path, FoldTable]:
    """Convert a PROMISE12 download into ``raw_root/Dataset<ID>_PROMISE12``; return (folder, fold table).

    Options of other converters (``options``) are an error, not silently ignored."""
    reject_options("PROMISE12", options)
    training, unlabeled = collect(Path(input_dir), with_unlabeled)
    needed = SPEC.n_val_groups + SPEC.n_test_groups + max(SPEC.labeled_counts)
    if len(training) < needed:
        raise ConversionError(f"{find_root(Path(input_dir))} holds {len(training)} training cases: the split needs "
                              f"at least {needed} ({SPEC.n_val_groups} validation + {SPEC.n_test_groups} test + "
                              f"{max(SPEC.labeled_counts)} labeled; the full download has 50)")
    if len(training) != EXPECTED_CASES:
        warnings.warn(f"found {len(training)} PROMISE12 training cases in {find_root(Path(input_dir))}, the paper "
                      f"uses {EXPECTED_CASES}: the split keeps {SPEC.n_val_groups} validation / {SPEC.n_test_groups} "
                      f"test cases and the rest as training pool", stacklevel=2)
    train, val, test = split_cases(training, SPEC, seed)
    test_set = set(test)
    with staged_dataset(raw_root, dataset_id, SPEC.name, overwrite) as folder:
        for case in training:
            image, label = read_image_and_label(case)
            write_case(folder, case.case_id, image, label_values(label, case.label, LABEL_MAPPING),
                       test=case.case_id in test_set)
        for case in unlabeled:
            write_case(folder, case.case_id, read_image(case.image), None, test=False)
        training_cases = [c for c in training if c.case_id not in test_set] + unlabeled
        table = finish_dataset(folder, SPEC, training_cases, val, train, test, seed)
    return target_folder(raw_root, dataset_id, SPEC.name), table
