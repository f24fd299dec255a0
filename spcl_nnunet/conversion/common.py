"""Shared pieces of the dataset converters: reading and checking scans, writing cases, and the
sidecars (``dataset.json``, ``meta_labels.json``, the labeled-subset folds).

Every converter builds its dataset inside :func:`spcl_nnunet.data.rawdataset.staged_dataset`, so a bad
input file (reported with its path and what was expected) leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spcl_nnunet.data.metalabels import MetaLabels, save_meta_labels
from spcl_nnunet.data.splits import FoldTable, make_fold_table, split_groups, write_fold_files

FILE_ENDING = ".nii.gz"


class ConversionError(ValueError):
    """Bad or missing input in the user's download (the message names the file)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a converter writes: name, channels, labels, slice partitions S, and the paper's
    split sizes (validation/test groups, labeled counts x repeats)."""

    name: str
    description: str
    reference: str
    channel_names: Mapping[str, str]
    labels: Mapping[str, int]
    slice_partitions: int
    n_val_groups: int
    n_test_groups: int
    labeled_counts: Sequence[int]
    repeats: int = 3


@dataclass
class SourceCase:
    """One scan to write: its nnU-Net case id, files, case-level meta-labels and group (patient)."""

    case_id: str
    image: Path
    label: Path | None  # None: label-less (a placeholder label is written, listed as unlabeled)
    meta: dict[str, str]
    group: str
    extra: dict = field(default_factory=dict)


def read_image(path: Path) -> sitk.Image:
    """Read a scan; it must exist, be readable and be one 3D volume with one value per voxel."""
    if not Path(path).is_file():
        raise ConversionError(f"missing file {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ConversionError(f"cannot read {path} as a medical image: {str(err).strip().splitlines()[-1]}") from err
    check_scalar_volume(image, path)
    return image


def read_image_and_label(case: SourceCase) -> tuple[sitk.Image, sitk.Image]:
    """A labeled case's image and label, read and checked to share one grid."""
    image, label = read_image(case.image), read_image(case.label)
    check_same_geometry(image, label, case.image, case.label)
    return image, label


def check_same_geometry(image: sitk.Image, label: sitk.Image, image_path: Path, label_path: Path,
                        tolerance: float = 1e-3) -> None:
    """Label and image must share size and spacing (and origin/direction within tolerance)."""
    if image.GetSize() != label.GetSize():
        raise ConversionError(f"{label_path} has size {label.GetSize()} but its image {image_path} has "
                              f"{image.GetSize()}: expected the same grid")
    for what, a, b in (("spacing", image.GetSpacing(), label.GetSpacing()),
                       ("origin", image.GetOrigin(), label.GetOrigin()),
                       ("direction", image.GetDirection(), label.GetDirection())):
        if not np.allclose(a, b, atol=tolerance * max(1.0, float(np.max(np.abs(a))))):
            raise ConversionError(f"{label_path} has {what} {tuple(round(v, 4) for v in b)} but its image "
                                  f"{image_path} has {tuple(round(v, 4) for v in a)}: expected the same {what}")


def label_values(label: sitk.Image, label_path: Path, mapping: Mapping[int, int],
                 keep_others_as_background: bool = False) -> np.ndarray:
    """Label array mapped through ``mapping`` (source value -> nnU-Net label) as uint8.

    Values outside ``mapping`` are an error naming the file, unless
    ``keep_others_as_background`` (then they become 0)."""
    array = sitk.GetArrayFromImage(label)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ConversionError(f"{label_path} holds non-integer values: expected a label map")
        array = array.astype(np.int64)
    present = np.unique(array)
    unknown = sorted(int(v) for v in present if int(v) not in mapping)
    if unknown and not keep_others_as_background:
        raise ConversionError(f"{label_path} holds unexpected label value(s) {unknown}: expected only "
                              f"{sorted(mapping)}")
    out = np.zeros(array.shape, dtype=np.uint8)
    for source, target in mapping.items():
        out[array == source] = target
    return out


def write_case(folder: Path, case_id: str, image: sitk.Image, label: np.ndarray | None, test: bool,
               image_array: np.ndarray | None = None) -> None:
    """Write ``images{Tr,Ts}/<case>_0000.nii.gz`` and ``labels{Tr,Ts}/<case>.nii.gz``, both with
    the image's geometry. ``label=None`` writes an all-zero placeholder label;
    ``image_array`` replaces the image's voxels (e.g. clipped intensities)."""
    suffix = "Ts" if test else "Tr"
    out_image = image
    if image_array is not None:
        out_image = sitk.GetImageFromArray(image_array)
        out_image.CopyInformation(image)
    sitk.WriteImage(out_image, str(folder / f"images{suffix}" / f"{case_id}_0000{FILE_ENDING}"), True)
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8) if label is None else label
    label_image = sitk.GetImageFromArray(array.astype(np.uint8))
    label_image.CopyInformation(image)
    sitk.WriteImage(label_image, str(folder / f"labels{suffix}" / f"{case_id}{FILE_ENDING}"), True)


def split_cases(cases: Iterable[SourceCase], spec: DatasetSpec, seed: int
                ) -> tuple[list[str], list[str], list[str]]:
    """Patient-level train/val/test split of the labeled cases (the paper's sizes, in groups)."""
    groups: dict[str, list[str]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case.case_id)
    return split_groups(groups, spec.n_val_groups, spec.n_test_groups, seed)


def finish_dataset(folder: Path, spec: DatasetSpec, training_cases: Sequence[SourceCase], val: Sequence[str],
                   train_pool: Sequence[str], test: Sequence[str], seed: int,
                   extra_dataset_json: Mapping[str, object] | None = None) -> FoldTable:
    """Write ``dataset.json``, ``meta_labels.json`` and the fold files into the staging folder.

    ``training_cases`` are all imagesTr cases (train pool, validation and label-less ones);
    label-less cases are listed under ``unlabeled`` and never drawn as labeled scans."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    # nnU-Net's writer (into the staging folder: the dataset appears whole or not at all); it converts the
    # dicts it is given in place, so it gets copies
    generate_dataset_json(str(folder), dict(spec.channel_names), dict(spec.labels), len(training_cases), FILE_ENDING,
                          dataset_name=spec.name, description=spec.description, reference=spec.reference,
                          license="the source dataset's terms (see reference)", converted_by="spcl_nnunet convert",
                          **dict(extra_dataset_json or {}))
    meta = MetaLabels(slice_partitions=spec.slice_partitions,
                      cases={c.case_id: dict(c.meta) for c in training_cases},
                      unlabeled=sorted(c.case_id for c in training_cases if c.label is None))
    save_meta_labels(meta, folder)
    table = make_fold_table(train_pool, val, spec.labeled_counts, spec.repeats, seed, test=test)
    write_fold_files(folder, table)
    return table


def check_scalar_volume(image: sitk.Image, path: Path) -> None:
    """A scan must be one 3D volume with one value per voxel (not 2D, 4D or a vector image)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(f"{path} is a {image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} "
                              f"value(s) per voxel: expected a 3D volume with one value per voxel")


def reject_options(dataset: str, options: Mapping[str, object]) -> None:
    """Options of other converters (e.g. ``--with-unlabeled``) are an error, not silently ignored."""
    if options:
        raise ConversionError(f"option(s) {', '.join('--' + k.replace('_', '-') for k in sorted(options))} "
                              f"do not apply to {dataset}")
