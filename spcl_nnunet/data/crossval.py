"""Cross-validation folds for one's own dataset (``spcl_nnunet folds``).

k-fold cross-validation over the *labeled* cases, grouped by patient: nnU-Net's own split
(``generate_crossval_split``: scikit-learn's shuffled KFold, seed 12345, 5 folds by default) drawn
over the patients instead of the cases, so that the scans of one patient (both cardiac phases, say)
never straddle training and validation, which nnU-Net's case-level split does not guarantee.
Label-less cases (``unlabeled`` in ``meta_labels.json``) are in no fold: the SP-Con trainers use
them as unlabeled images, nnU-Net's stock trainers never see them.

A user's own ``splits_final.json`` is checked against the same rules instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spcl_nnunet.data.metalabels import MetaLabels, _preview
from spcl_nnunet.data.splits import FoldSpec, FoldTable, cross_validation_table

NNUNET_SEED = 12345     # nnU-Net's seed of its 5-fold split


def labeled_cases(meta: MetaLabels) -> list[str]:
    """The cases with a real label: every meta-labelled case but the label-less ones."""
    return sorted(set(meta.cases) - set(meta.unlabeled))


def patient_of(meta: MetaLabels, case: str) -> str:
    return meta.cases.get(case, {}).get("patient", case)


def cross_validation_folds(meta: MetaLabels, n_folds: int = 5, seed: int = NNUNET_SEED,
                           test: Sequence[str] = ()) -> FoldTable:
    """k-fold cross-validation over the labeled cases, grouped by patient (see the module docstring)."""
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    cases = labeled_cases(meta)
    groups: dict[str, list[str]] = {}
    for case in cases:
        groups.setdefault(patient_of(meta, case), []).append(case)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"--nfolds must be a whole number >= 2, got {n_folds!r}")
    if n_folds > len(groups):
        raise ValueError(f"{n_folds}-fold cross-validation needs at least {n_folds} labeled patients; the dataset has "
                         f"{len(groups)} ({len(cases)} labeled case(s)): use --nfolds {max(len(groups), 2)} or fewer")
    splits = generate_crossval_split(sorted(groups), seed=seed, n_splits=n_folds)
    folds = []
    for fold, split in enumerate(splits):
        train = sorted(c for patient in split["train"] for c in groups[str(patient)])
        val = sorted(c for patient in split["val"] for c in groups[str(patient)])
        folds.append(FoldSpec(fold=fold, num_labeled=len(train), split=fold, labeled=train, val=val))
    table = cross_validation_table(folds, cases, test, seed, "cross-validation folds")
    check_folds_against_meta(table, meta, "cross-validation folds")
    return table


def folds_from_splits(splits: Any, meta: MetaLabels, source: str, test: Sequence[str] = ()) -> FoldTable:
    """A user's ``splits_final.json`` (``[{"train": [...], "val": [...]}, ...]``) as a
    cross-validation fold table, checked like ours."""
    if not isinstance(splits, list) or not splits:
        raise ValueError(f"{source}: expected a non-empty list of folds {{\"train\": [...], \"val\": [...]}}")
    folds = []
    for fold, entry in enumerate(splits):
        if not isinstance(entry, Mapping) or set(entry) != {"train", "val"}:
            raise ValueError(f"{source}: fold {fold}: expected an object with exactly \"train\" and \"val\"")
        for key in ("train", "val"):
            if not isinstance(entry[key], list) or not all(isinstance(c, str) for c in entry[key]):
                raise ValueError(f"{source}: fold {fold}: expected \"{key}\" to be a list of case ids")
        folds.append(FoldSpec(fold=fold, num_labeled=len(entry["train"]), split=fold,
                              labeled=sorted(entry["train"]), val=sorted(entry["val"])))
    check_folds_against_meta(FoldTable(seed=0, val=[], test=[], train_pool=[], labeled_counts=[], repeats=1,
                                       folds=folds), meta, source)
    return cross_validation_table(folds, labeled_cases(meta), test, 0, source)


def check_folds_against_meta(table: FoldTable, meta: MetaLabels, source: str) -> None:
    """Every case known, no label-less case trained or validated on, no patient on both sides."""
    unlabeled = set(meta.unlabeled)
    for spec in table.folds:
        val = table.val_of(spec)
        unknown = sorted((set(spec.labeled) | set(val)) - set(meta.cases))
        if unknown:
            raise ValueError(f"{source}: fold {spec.fold} names case(s) that are not in the dataset: "
                             f"{_preview(unknown)}")
        for role, cases in (("trains", spec.labeled), ("validates", val)):
            placeholders = sorted(unlabeled & set(cases))
            if placeholders:
                raise ValueError(f"{source}: fold {spec.fold} {role} on label-less case(s) {_preview(placeholders)} "
                                 f"(their labels are placeholders; they are listed as unlabeled in meta_labels.json)")
        straddling = sorted({patient_of(meta, c) for c in spec.labeled} & {patient_of(meta, c) for c in val})
        if straddling:
            examples = [f"{p}: {', '.join(c for c in sorted(spec.labeled) + sorted(val) if patient_of(meta, c) == p)}"
                        for p in straddling[:3]]
            raise ValueError(f"{source}: fold {spec.fold} has patient(s) in both train and val: "
                             f"{'; '.join(examples)}{' ...' if len(straddling) > 3 else ''}")
