"""Label-less scans added to an nnU-Net raw dataset (``spcl_nnunet add-unlabeled``).

nnU-Net requires a label file for every ``imagesTr`` case. Each label-less image is written into
``imagesTr`` under nnU-Net's naming (``CASE_XXXX<file_ending>``, the file copied byte for byte),
with a *placeholder* label of the same geometry (all background, written by the dataset's own
nnU-Net reader/writer from the image's header) in ``labelsTr``, and listed in ``unlabeled.json``,
from which ``spcl_nnunet metalabels`` copies the list into ``meta_labels.json``. The trainers
never use a placeholder as a target, and ``spcl_nnunet folds`` keeps these cases out of every
``splits_final.json`` fold, so nnU-Net's stock trainers never see them.

Planning: nnU-Net's fingerprint samples the foreground intensities (the CT normalisation's
statistics) only where the label is > 0, so placeholders add no sample to them; their spacings
and shapes do enter the median spacing and shape, as every scan of the data should.

Input files: ``NAME<file_ending>`` (single-channel datasets; case id ``NAME``) or
``CASE_XXXX<file_ending>`` (one file per channel). Refused before anything is written: another file
type, a channel count or dimensionality that differs from the dataset's, a case id already in
``imagesTr`` (or twice in the folder). Everything is written into a temporary folder first, then
moved into place; an error while moving takes back what was moved.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spcl_nnunet.data.jsonfile import read_json
from spcl_nnunet.data.metalabels import _preview, write_json_atomic
from spcl_nnunet.data.rawdataset import channel_count, load_dataset_json, training_case_ids

UNLABELED_FILE = "unlabeled.json"
UNLABELED_VERSION = 1
_CHANNEL_FILE = re.compile(r"(.+)_(\d{4})")


def load_unlabeled(raw: str | os.PathLike[str]) -> list[str]:
    """The label-less case ids recorded in ``raw/unlabeled.json`` ([] without the file)."""
    path = Path(raw) / UNLABELED_FILE
    if not path.is_file():
        return []
    data = read_json(path)
    cases = data.get("cases") if isinstance(data, dict) else None
    if data.get("version") != UNLABELED_VERSION or not isinstance(cases, list) or \
            not all(isinstance(c, str) for c in cases):
        raise ValueError(f"{path}: expected {{\"version\": {UNLABELED_VERSION}, \"cases\": [case ids]}}")
    return sorted(cases)


def check_unlabeled_listed(raw: str | os.PathLike[str], listed: Sequence[str]) -> None:
    """``meta_labels.json``'s label-less cases (``listed``) are those ``add-unlabeled`` recorded
    (datasets without ``unlabeled.json``, e.g. from a converter, list them in ``meta_labels.json`` only)."""
    if not (Path(raw) / UNLABELED_FILE).is_file():
        return
    recorded = load_unlabeled(raw)
    if sorted(recorded) != sorted(listed):
        raise ValueError(f"{Path(raw) / 'meta_labels.json'} lists {len(listed)} label-less case(s), "
                         f"{Path(raw) / UNLABELED_FILE} {len(recorded)}: run 'spcl_nnunet metalabels ... --overwrite' "
                         f"again after adding label-less images")


def group_channel_files(folder: Path, file_ending: str, channels: int) -> dict[str, list[Path]]:
    """``{case id: [channel 0 file, channel 1 file, ...]}`` of the image files in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"folder of label-less images {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no image file")
    other = [p.name for p in files if not p.name.endswith(file_ending)]
    if other:
        raise ValueError(f"{folder}: {len(other)} file(s) are not of the dataset's file type {file_ending!r} "
                         f"(dataset.json's file_ending): {_preview(other)}")
    cases: dict[str, dict[int, Path]] = {}
    for path in files:
        stem = path.name[:-len(file_ending)]
        match = _CHANNEL_FILE.fullmatch(stem)
        if match:
            case, channel = match.group(1), int(match.group(2))
        elif channels == 1:
            case, channel = stem, 0
        else:
            raise ValueError(f"{path}: the dataset has {channels} channels, so each image needs one file per channel "
                             f"named CASE_0000{file_ending} ... CASE_{channels - 1:04d}{file_ending}")
        cases.setdefault(case, {})[channel] = path
    for case, by_channel in sorted(cases.items()):
        if sorted(by_channel) != list(range(channels)):
            raise ValueError(f"{folder}: case {case!r} has channel file(s) {sorted(by_channel)}, but the dataset has "
                             f"{channels} channel(s) (expected {', '.join(f'_{c:04d}' for c in range(channels))}; "
                             f"files: {', '.join(p.name for p in by_channel.values())})")
    return {case: [by_channel[c] for c in range(channels)] for case, by_channel in sorted(cases.items())}


def listed_in_meta_labels(raw: Path) -> list[str]:
    """The label-less cases an existing ``meta_labels.json`` lists (a converter's, say)."""
    from spcl_nnunet.data.metalabels import META_LABELS_FILE, load_meta_labels

    return load_meta_labels(raw / META_LABELS_FILE).unlabeled if (raw / META_LABELS_FILE).is_file() else []


def image_layout(path: Path) -> tuple[int, int] | None:
    """(dimension, components per pixel) from the header (SimpleITK), None if SimpleITK cannot read it."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader.GetDimension(), reader.GetNumberOfComponents()


def add_unlabeled_images(raw: str | os.PathLike[str], source: str | os.PathLike[str]) -> list[str]:
    """Add every image of ``source`` to the raw dataset ``raw`` as a label-less case; returns the
    new case ids (see the module docstring)."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    raw, source = Path(raw), Path(source)
    dataset_json = load_dataset_json(raw)
    ending, channels = dataset_json["file_ending"], channel_count(dataset_json)
    existing = training_case_ids(raw, dataset_json)
    if not existing:
        raise ValueError(f"{raw / 'imagesTr'} has no case: add the labeled cases first")
    new = group_channel_files(source, ending, channels)
    clash = sorted(set(new) & set(existing))
    if clash:
        raise ValueError(f"case id(s) already in {raw / 'imagesTr'}: {_preview(clash)} (files in {source}); rename "
                         f"the label-less images")
    reference = raw / "imagesTr" / f"{existing[0]}_0000{ending}"
    reader_writer = determine_reader_writer_from_dataset_json(dataset_json, str(reference))
    expected = image_layout(reference)
    for case, paths in new.items():
        for path in paths:
            layout = image_layout(path)
            if expected is not None and layout is not None and layout != expected:
                raise ValueError(f"{path}: a {layout[0]}-D image with {layout[1]} component(s) per pixel, but the "
                                 f"dataset's images (e.g. {reference.name}) are {expected[0]}-D with {expected[1]}: "
                                 f"another dimensionality or channel count")
    unlabeled = sorted(set(load_unlabeled(raw)) | set(new) | set(listed_in_meta_labels(raw)))
    staging = raw / f".tmp_add_unlabeled_{uuid.uuid4().hex[:8]}"
    moved: list[Path] = []
    previous = {name: (raw / name).read_bytes() if (raw / name).is_file() else None
                for name in ("dataset.json", UNLABELED_FILE)}
    replaced: list[str] = []
    try:
        for sub in ("imagesTr", "labelsTr"):
            (staging / sub).mkdir(parents=True)
        for case, paths in new.items():
            data, properties = reader_writer().read_images([str(p) for p in paths])
            if data.shape[0] != channels:
                raise ValueError(f"{paths[0]}: read as {data.shape[0]} channel(s), the dataset has {channels}")
            for channel, path in enumerate(paths):
                shutil.copyfile(path, staging / "imagesTr" / f"{case}_{channel:04d}{ending}")
            reader_writer().write_seg(np.zeros(data.shape[1:], dtype=np.uint8),
                                      str(staging / "labelsTr" / f"{case}{ending}"), properties)
        dataset_json = {**dataset_json, "numTraining": len(existing) + len(new)}
        write_json_atomic(staging / "dataset.json", dataset_json)
        write_json_atomic(staging / UNLABELED_FILE, {"version": UNLABELED_VERSION, "cases": unlabeled})
        for sub in ("imagesTr", "labelsTr"):
            for path in sorted((staging / sub).iterdir()):
                target = raw / sub / path.name
                if target.exists():
                    raise FileExistsError(f"{target} appeared while adding the label-less images")
                os.replace(path, target)
                moved.append(target)
        for name in ("dataset.json", UNLABELED_FILE):
            os.replace(staging / name, raw / name)
            replaced.append(name)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        for name in replaced:
            if previous[name] is None:
                (raw / name).unlink(missing_ok=True)
            else:
                (raw / name).write_bytes(previous[name])
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(new)
