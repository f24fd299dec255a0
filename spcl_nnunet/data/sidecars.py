"""Where the trainers find the meta-label and fold sidecars.

The converters and ``spcl_nnunet synthetic`` write ``meta_labels.json``, ``spcl_folds.json`` and
``splits_final.json`` into the raw dataset folder. nnU-Net reads ``splits_final.json`` from the
preprocessed dataset folder, and training machines often only have ``nnUNet_preprocessed`` and
``nnUNet_results``: ``spcl_nnunet prepare -d ID`` copies the three files next to the preprocessed
dataset. The trainers read them there (and copy them from the raw folder themselves when the raw
folder is present), and refuse to start without them: no silent default, and never nnU-Net's
random 5-fold split, which would train on every label.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from spcl_nnunet.data.metalabels import META_LABELS_FILE, MetaLabels, load_meta_labels
from spcl_nnunet.data.crossval import check_folds_against_meta
from spcl_nnunet.data.splits import FOLDS_FILE, SPLITS_FILE, FoldTable, load_fold_table
from spcl_nnunet.data.unlabeled import check_unlabeled_listed

SIDECAR_FILES = (META_LABELS_FILE, FOLDS_FILE, SPLITS_FILE)


class MissingSidecarError(FileNotFoundError):
    """A sidecar needed by the SP-Con trainers is missing."""


def dataset_id_of(dataset_name: str) -> int | str:
    """``Dataset501_Heart`` -> 501 (a name without a number: the name itself)."""
    dataset_id = dataset_name.split("_")[0].removeprefix("Dataset")
    return int(dataset_id) if dataset_id.isdigit() else dataset_name


def prepare_command(dataset_name: str) -> str:
    return f"spcl_nnunet prepare -d {dataset_id_of(dataset_name)}"



def require_raw_sidecars(raw: Path, dataset_id: int | str | None = None) -> None:
    """Raise :class:`MissingSidecarError` naming every sidecar the raw dataset folder ``raw``
    lacks, and the commands that write them (their ``-d``: ``dataset_id``, by default from the
    folder's name)."""
    dataset_id = dataset_id_of(Path(raw).name) if dataset_id is None else dataset_id
    missing = [name for name in SIDECAR_FILES if not (Path(raw) / name).is_file()]
    if missing:
        raise MissingSidecarError(
            f"{raw} lacks {', '.join(missing)}: for your own dataset run 'spcl_nnunet metalabels -d {dataset_id}' "
            f"(meta-labels) and 'spcl_nnunet folds -d {dataset_id}' (cross-validation folds), see the README's "
            f"'Your own dataset'; the paper's datasets get them from 'spcl_nnunet convert' and their "
            f"labeled-subset folds from 'spcl_nnunet splits'; 'spcl_nnunet synthetic' writes a dataset with all three")


def install_sidecars(raw_dataset_dir: str | os.PathLike[str], preprocessed_dataset_dir: str | os.PathLike[str]
                     ) -> list[Path]:
    """Copy the sidecars from the raw dataset folder next to the preprocessed dataset.

    All three are validated first (meta-labels readable, folds consistent with
    ``splits_final.json``); each copy lands atomically.
    """
    raw, pre = Path(raw_dataset_dir), Path(preprocessed_dataset_dir)
    require_raw_sidecars(raw)
    if not pre.is_dir():
        raise MissingSidecarError(f"preprocessed dataset folder {pre} does not exist: run "
                                  f"nnUNetv2_plan_and_preprocess -d <ID> -c 2d first")
    meta = load_meta_labels(raw / META_LABELS_FILE)
    check_unlabeled_listed(raw, meta.unlabeled)
    table = load_fold_table(raw)
    if table.cross_validation:
        check_folds_against_meta(table, meta, str(raw / FOLDS_FILE))
    written = []
    for name in SIDECAR_FILES:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=pre)
        os.close(fd)
        try:
            shutil.copyfile(raw / name, tmp)
            os.replace(tmp, pre / name)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        written.append(pre / name)
    return written


def load_sidecars(preprocessed_dataset_dir: str | os.PathLike[str], raw_dataset_dir: str | os.PathLike[str] | None,
                  dataset_name: str) -> tuple[MetaLabels, FoldTable, list[str]]:
    """Meta-labels and fold table of a preprocessed dataset, plus notes on what was done.

    Missing in the preprocessed folder but present in the raw folder: copied (noted). Missing
    in both: ``MissingSidecarError`` naming the command that makes them.
    """
    pre = Path(preprocessed_dataset_dir)
    notes: list[str] = []
    missing = [name for name in SIDECAR_FILES if not (pre / name).is_file()]
    if missing:
        raw = Path(raw_dataset_dir) if raw_dataset_dir is not None else None
        if raw is not None and all((raw / name).is_file() for name in SIDECAR_FILES):
            install_sidecars(raw, pre)
            notes.append(f"copied {', '.join(SIDECAR_FILES)} from {raw} to {pre}")
        else:
            raise MissingSidecarError(
                f"{pre} lacks {', '.join(missing)}. The SP-Con trainers need the meta-labels and the "
                f"folds and never fall back to nnU-Net's 5-fold split over every case (which would validate "
                f"on label-less cases). Run '{prepare_command(dataset_name)}' (it copies them from the raw "
                f"dataset, where 'spcl_nnunet metalabels' and 'spcl_nnunet folds', a converter or "
                f"'spcl_nnunet synthetic' wrote them).")
    return load_meta_labels(pre / META_LABELS_FILE), load_fold_table(pre), notes
