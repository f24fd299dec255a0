"""The file-system side of an experiment: where things live, what state a training folder is in,
and writes that never leave a half-written file or folder behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


# ---------------------------------------------------------------------------------------------- layout
def training_folder(results: Path, trainer: str, fold: int) -> Path:
    """nnU-Net's output folder of a 2d training under a dataset's results folder."""
    return results / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"


def pretraining_results(root: Path, trainer: str) -> Path:
    """The ``nnUNet_results`` of the pre-training ``trainer`` under a ``pretraining/`` root."""
    return root / trainer


def pretraining_folder(root: Path, dataset: str, trainer: str, fold: int) -> Path:
    """nnU-Net's output folder of the pre-training ``trainer`` of ``fold`` under a ``pretraining/`` root."""
    return training_folder(pretraining_results(root, trainer) / dataset, trainer, fold)


def run_folder(workdir: Path, method: str, fold: int) -> Path:
    """The folder of one run (method x fold): its ``nnUNet_results``, logs and evaluation."""
    return workdir / "runs" / method / f"fold_{fold}"


def files_of_test_case(raw: Path, dataset_json: dict, case: str) -> tuple[list[Path], Path]:
    """(image per channel, label) of a test case in a raw dataset's imagesTs/labelsTs."""
    ending = dataset_json["file_ending"]
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {"0": "image"}
    images = [raw / "imagesTs" / f"{case}_{int(c):04d}{ending}" for c in sorted(channels, key=int)]
    return images, raw / "labelsTs" / f"{case}{ending}"


# ---------------------------------------------------------------------------------------------- state
def training_state(output_folder: Path, validated: bool) -> str:
    """``finished`` (checkpoint_final.pth, and where the trainer validates after training,
    nnU-Net's final validation ``validation/summary.json``), ``validate`` (final checkpoint without
    the validation), ``interrupted`` (a checkpoint_latest.pth to resume with ``--c``) or ``new``."""
    final = (output_folder / "checkpoint_final.pth").is_file()
    if final and (not validated or (output_folder / "validation" / "summary.json").is_file()):
        return "finished"
    if final:
        return "validate"
    return "interrupted" if (output_folder / "checkpoint_latest.pth").is_file() else "new"


def checkpoint_stamp(path: Path) -> dict[str, Any]:
    """What identifies a checkpoint file (path, size, mtime): a result made from it names it."""
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# ---------------------------------------------------------------------------------------------- writes
def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write ``path`` through a temporary sibling (``write(temporary path)``) renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder onto ``target`` (the old one is removed after the rename)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def link_test_set(target: Path, raw: Path, dataset_json: dict, cases: list[str]) -> None:
    """``target/imagesTs`` and ``target/labelsTs``: links to exactly ``cases`` of the raw dataset,
    made in a temporary sibling and renamed into place."""
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("imagesTs", "labelsTs"):
        (tmp / sub).mkdir(parents=True)
    for case in cases:
        images, label = files_of_test_case(raw, dataset_json, case)
        for image in images:
            os.symlink(image.resolve(), tmp / "imagesTs" / image.name)
        os.symlink(label.resolve(), tmp / "labelsTs" / label.name)
    replace_folder(tmp, target)
