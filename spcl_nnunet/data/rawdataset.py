"""Writing an nnU-Net raw dataset all at once: built in a temporary sibling folder, then renamed
into place, so that a failure (bad input, full disk) never leaves a half-written dataset behind.
Used by the synthetic generator and the dataset converters, which write ``dataset.json`` into the
staging folder with nnU-Net's own ``generate_dataset_json``."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from spcl_nnunet.data.jsonfile import read_json

RAW_SUBFOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def target_folder(raw_root: str | os.PathLike[str], dataset_id: int, name: str) -> Path:
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset id must be in 1..999 (nnU-Net's DatasetXXX), got {dataset_id}")
    return Path(raw_root) / f"Dataset{int(dataset_id):03d}_{name}"


@contextmanager
def staged_dataset(raw_root: str | os.PathLike[str], dataset_id: int, name: str,
                   overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder (with imagesTr/labelsTr/imagesTs/labelsTs) that becomes
    ``raw_root/DatasetXXX_name`` when the block ends without error, and is removed otherwise.

    An existing target is refused unless ``overwrite``; another folder with the same dataset id
    is always refused (nnU-Net resolves ids by prefix)."""
    raw_root = Path(raw_root)
    raw_root.mkdir(parents=True, exist_ok=True)
    target = target_folder(raw_root, dataset_id, name)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite (overwrite=True) to replace it")
    clash = sorted(d.name for d in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if d != target and d.is_dir())
    if clash:
        raise ValueError(f"dataset id {dataset_id} is already used in {raw_root} by {clash}")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{target.name}_", dir=raw_root))
    try:
        for sub in RAW_SUBFOLDERS:
            (tmp / sub).mkdir()
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700; give the dataset ordinary permissions
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is set aside first and removed after."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.with_name(f".old_{target.name}_{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_dataset_json(folder: str | os.PathLike[str]) -> dict:
    """nnU-Net's ``dataset.json`` of a raw dataset folder, with the keys this package relies on."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not an nnU-Net raw dataset")
    data = read_json(path)
    missing = [k for k in ("file_ending", "labels", "numTraining") if k not in data]
    if missing or not (data.get("channel_names") or data.get("modality")):
        raise ValueError(f"{path}: expected nnU-Net's keys channel_names, labels, numTraining, file_ending; "
                         f"missing {missing or ['channel_names']}")
    if "dataset" in data:
        raise ValueError(f"{path} lists its files under \"dataset\"; this command works on the imagesTr/labelsTr "
                         f"layout only")
    return data


def channel_count(dataset_json: Mapping) -> int:
    return len(dataset_json.get("channel_names") or dataset_json.get("modality"))


def training_case_ids(folder: str | os.PathLike[str], dataset_json: Mapping | None = None) -> list[str]:
    """The case ids of ``imagesTr`` as nnU-Net finds them (``CASE_XXXX<file_ending>``), sorted."""
    from nnunetv2.utilities.utils import get_identifiers_from_splitted_dataset_folder

    folder = Path(folder)
    dataset_json = dataset_json or load_dataset_json(folder)
    images = folder / "imagesTr"
    if not images.is_dir():
        raise FileNotFoundError(f"{images} not found: {folder} is not an nnU-Net raw dataset")
    return sorted(get_identifiers_from_splitted_dataset_folder(str(images), dataset_json["file_ending"]))

