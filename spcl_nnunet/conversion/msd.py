"""Shared reader of Medical Segmentation Decathlon (MSD) tasks, used by the Hippocampus and Spleen
converters.

Input: the unpacked task folder ``TaskXX_Name/`` or the folder that holds it::

    Task04_Hippocampus/dataset.json  imagesTr/hippocampus_001.nii.gz  labelsTr/hippocampus_001.nii.gz
                       imagesTs/...  (+ macOS junk files ._hippocampus_001.nii.gz, ._imagesTr, ...)

The cases are the ``training`` list of the task's ``dataset.json`` (``{"image": "./imagesTr/x.nii.gz",
"label": "./labelsTr/x.nii.gz"}``); its ``name``, ``modality`` and label ids must be those of the
expected task. macOS ``._*`` files are never cases (nor candidate task folders). Case ids keep the
MSD names (``hippocampus_367``, ``spleen_2``: not contiguous, not always zero-padded); every case is
its own group for the split and has no case-level meta-label (slice position only).
``imagesTs`` (no labels) is not converted: the test split is drawn from the labeled cases, as in
the paper. Images are written without reorientation (the slice axis is the one nnU-Net's
``transpose_forward`` picks), optionally with clipped intensities.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spcl_nnunet.conversion.common import (FILE_ENDING, ConversionError, DatasetSpec, SourceCase,
                                           finish_dataset, label_values, read_image_and_label, split_cases,
                                           write_case)
from spcl_nnunet.data.rawdataset import staged_dataset, target_folder
from spcl_nnunet.data.splits import FoldTable, make_fold_table

JUNK_PREFIX = "._"


@dataclass(frozen=True)
class MSDTask:
    """What identifies an MSD task: folder name, ``dataset.json`` name, modality and label ids."""

    folder_name: str                 # e.g. "Task04_Hippocampus"
    name: str                        # "name" in its dataset.json
    modality: Mapping[str, str]      # "modality" in its dataset.json
    label_ids: tuple[int, ...]       # keys of "labels" in its dataset.json
    expected_cases: int              # length of its "training" list in the official release


def is_junk(path: Path | str) -> bool:
    """macOS AppleDouble files (``._name``) that the MSD tarballs carry next to the real files."""
    return Path(path).name.startswith(JUNK_PREFIX)


def find_task_folder(input_dir: Path, task: MSDTask) -> Path:
    """``input_dir`` itself when it holds ``dataset.json``, else its one ``TaskXX_<name>`` subfolder."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise ConversionError(f"{input_dir} is not a folder: expected the unpacked MSD task {task.folder_name}/ "
                              f"(or the folder holding it)")
    if (input_dir / "dataset.json").is_file():
        return input_dir
    pattern = re.compile(rf"^Task\d+_{re.escape(task.name)}$", re.IGNORECASE)
    subfolders = [p for p in sorted(input_dir.iterdir()) if p.is_dir() and not is_junk(p)]
    candidates = [p for p in subfolders if pattern.match(p.name)]
    if len(candidates) > 1:
        raise ConversionError(f"{input_dir} holds several {task.name} task folders {[p.name for p in candidates]}: "
                              f"pass the one to convert")
    if not candidates:
        found = f" (found: {', '.join(p.name for p in subfolders[:10])})" if subfolders else " (it has no subfolders)"
        raise ConversionError(f"no MSD {task.folder_name}/dataset.json in {input_dir}{found}: expected the unpacked "
                              f"task folder {task.folder_name}/ or the folder holding it")
    if not (candidates[0] / "dataset.json").is_file():
        raise ConversionError(f"missing file {candidates[0] / 'dataset.json'}: expected the MSD task's dataset.json "
                              f"(with its \"training\" list)")
    return candidates[0]


def _load_dataset_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConversionError(f"cannot read {path} as JSON ({err}): expected the MSD task's dataset.json") from err
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object with \"training\", \"labels\" and \"modality\"")
    return data


def _check_task(data: dict, path: Path, task: MSDTask) -> None:
    name = data.get("name")
    if not isinstance(name, str) or name.lower() != task.name.lower():
        raise ConversionError(f"{path} describes task {name!r}: expected the MSD {task.name} task ({task.folder_name})")
    modality = data.get("modality")
    if not isinstance(modality, Mapping) or {str(k): v for k, v in modality.items()} != dict(task.modality):
        raise ConversionError(f"{path} has modality {modality!r}: expected {dict(task.modality)} ({task.folder_name})")
    labels = data.get("labels")
    try:
        ids = sorted(int(k) for k in labels) if isinstance(labels, Mapping) else None
    except ValueError:
        ids = None
    if ids != sorted(task.label_ids):
        raise ConversionError(f"{path} has labels {labels!r}: expected label ids {sorted(task.label_ids)} "
                              f"({task.folder_name})")


def _case_id(path: Path, where: Path) -> str:
    if not path.name.endswith(FILE_ENDING):
        raise ConversionError(f"{where} lists {path.name}: expected a {FILE_ENDING} file")
    case_id = path.name[: -len(FILE_ENDING)]
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", case_id):
        raise ConversionError(f"{where} lists {path.name}: expected a case name of letters, digits, '_' and '-'")
    return case_id


def read_task(input_dir: Path, task: MSDTask) -> tuple[Path, list[SourceCase]]:
    """The task folder and one :class:`SourceCase` per ``training`` entry of its ``dataset.json``
    (junk entries skipped; listed files must exist)."""
    folder = find_task_folder(input_dir, task)
    path = folder / "dataset.json"
    data = _load_dataset_json(path)
    _check_task(data, path, task)
    training = data.get("training")
    if not isinstance(training, list) or not training:
        raise ConversionError(f"{path} has no \"training\" list of {{\"image\": ..., \"label\": ...}}: expected the "
                              f"MSD task's labeled cases there")
    cases: list[SourceCase] = []
    seen: set[str] = set()
    for entry in training:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("image"), str) \
                or not isinstance(entry.get("label"), str):
            raise ConversionError(f"{path}: \"training\" entry {entry!r}: expected {{\"image\": "
                                  f"\"./imagesTr/x.nii.gz\", \"label\": \"./labelsTr/x.nii.gz\"}}")
        image, label = folder / entry["image"], folder / entry["label"]
        if is_junk(image) or is_junk(label):
            continue
        case_id = _case_id(image, path)
        if case_id in seen:
            raise ConversionError(f"{path} lists case {case_id} more than once")
        seen.add(case_id)
        for what, file in (("image", image), ("label", label)):
            if not file.is_file():
                raise ConversionError(f"missing {what} file {file} (listed in {path})")
        cases.append(SourceCase(case_id=case_id, image=image, label=label, meta={}, group=case_id))
    if not cases:
        raise ConversionError(f"{path} lists no training cases (only macOS ._ junk files)")
    return folder, cases


def clip_intensities(image: sitk.Image, low: float, high: float) -> np.ndarray:
    """Voxels of ``image`` clipped to [low, high], in the image's own data type when it can hold both
    bounds (else float32)."""
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if not (info.min <= low and high <= info.max):
            array = array.astype(np.float32)
    return np.clip(array, low, high).astype(array.dtype, copy=False)


def convert_task(input_dir: Path, raw_root: Path, dataset_id: int, task: MSDTask, spec: DatasetSpec, *,
                 overwrite: bool = False, seed: int = 0, default_spec: DatasetSpec | None = None,
                 intensity_clip: tuple[float, float] | None = None) -> tuple[Path, FoldTable]:
    """Convert an MSD task into ``raw_root/Dataset<ID>_<spec.name>`` (test split into imagesTs).

    ``intensity_clip``: clip the written images to this range (recorded in dataset.json)."""
    if intensity_clip is not None:
        low, high = (float(v) for v in intensity_clip)
        if not low < high:
            raise ValueError(f"intensity_clip must be (low, high) with low < high, got {intensity_clip}")
    folder, cases = read_task(input_dir, task)
    if spec is default_spec and len(cases) != task.expected_cases:
        warnings.warn(f"{folder / 'dataset.json'} lists {len(cases)} training cases, the official release "
                      f"{task.expected_cases}: the split keeps {spec.n_val_groups} val / {spec.n_test_groups} test "
                      f"cases and trains on the rest", stacklevel=3)
    train, val, test = split_cases(cases, spec, seed)
    make_fold_table(train, val, spec.labeled_counts, spec.repeats, seed, test=test)  # fail before writing
    mapping = {i: i for i in task.label_ids}
    test_ids = set(test)
    extra: dict[str, object] = {"source": f"Medical Segmentation Decathlon {folder.name}"}
    if intensity_clip is not None:
        extra["intensity_clip"] = [int(v) if v.is_integer() else v for v in (low, high)]
    with staged_dataset(raw_root, dataset_id, spec.name, overwrite) as tmp:
        for case in cases:
            image, label = read_image_and_label(case)
            clipped = clip_intensities(image, low, high) if intensity_clip is not None else None
            write_case(tmp, case.case_id, image, label_values(label, case.label, mapping),
                       test=case.case_id in test_ids, image_array=clipped)
        training = [case for case in cases if case.case_id not in test_ids]
        table = finish_dataset(tmp, spec, training, val, train, test, seed, extra)
    return target_folder(raw_root, dataset_id, spec.name), table
