"""Cross-validation folds over the labeled cases, grouped by patient, and the fold table that holds them."""

from __future__ import annotations

import json

import pytest

from spcl_nnunet.data.crossval import cross_validation_folds, folds_from_splits
from spcl_nnunet.data.metalabel_sources import derive_meta_labels
from spcl_nnunet.data.metalabels import MetaLabels
from spcl_nnunet.data.splits import FoldTable, load_fold_table, write_fold_files


def heart_meta(patients: int = 7, unlabeled: tuple[str, ...] = ("u-01_ED", "u-01_ES")) -> MetaLabels:
    cases = [f"p{p:02d}_{phase}" for p in range(patients) for phase in ("ED", "ES")] + list(unlabeled)
    return derive_meta_labels(cases, 3, patient_pattern=r"^([^_]+)_", patterns={"phase": "_(ED|ES)$"},
                              unlabeled=unlabeled)


def test_nnunet_split_drawn_over_patients():
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    meta = heart_meta()
    table = cross_validation_folds(meta)
    assert table.cross_validation and len(table.folds) == 5
    expected = generate_crossval_split([f"p{p:02d}" for p in range(7)], seed=12345, n_splits=5)
    for spec, split in zip(table.folds, expected):
        assert sorted({c.split("_")[0] for c in table.val_of(spec)}) == sorted(split["val"])
        assert sorted({c.split("_")[0] for c in spec.labeled}) == sorted(split["train"])
        assert spec.num_labeled == len(spec.labeled) and spec.split == spec.fold
    validated = sorted(c for spec in table.folds for c in table.val_of(spec))
    assert validated == sorted(c for c in meta.cases if not c.startswith("u-"))   # every labeled case once
    assert table.group_count(table.folds[0]) == 14


def test_fold_table_round_trip_and_splits_final(tmp_path):
    table = cross_validation_folds(heart_meta(), n_folds=3, test=["t-01_ED"])
    write_fold_files(tmp_path, table)
    splits = json.loads((tmp_path / "splits_final.json").read_text())
    assert [sorted(s["val"]) for s in splits] == [table.val_of(f) for f in table.folds]
    assert not {"u-01_ED", "u-01_ES"} & {c for s in splits for c in s["train"] + s["val"]}
    again = load_fold_table(tmp_path)
    assert again.to_json() == table.to_json() and again.test == ["t-01_ED"]
    data = json.loads((tmp_path / "spcl_folds.json").read_text())
    data["folds"][1]["val"].append(data["folds"][1]["labeled"][0])
    with pytest.raises(ValueError, match="fold 1 has case\\(s\\) in both train and val"):
        FoldTable.from_json(data, "f.json")


def test_too_many_folds_and_user_splits_rules():
    meta = heart_meta(patients=3)
    with pytest.raises(ValueError, match="5-fold cross-validation needs at least 5 labeled patients; the dataset has 3"):
        cross_validation_folds(meta)
    good = [{"train": ["p00_ED", "p00_ES"], "val": ["p01_ED", "p01_ES"]},
            {"train": ["p01_ED", "p01_ES"], "val": ["p02_ED"]}]
    table = folds_from_splits(good, meta, "mine.json")
    assert [len(f.labeled) for f in table.folds] == [2, 2] and table.val_of(table.folds[1]) == ["p02_ED"]
    with pytest.raises(ValueError, match="mine.json: fold 1 trains on label-less case\\(s\\) u-01_ED"):
        folds_from_splits([good[0], {"train": ["u-01_ED"], "val": ["p02_ED"]}], meta, "mine.json")
    with pytest.raises(ValueError, match="fold 0 names case\\(s\\) that are not in the dataset: p09_ED"):
        folds_from_splits([{"train": ["p09_ED"], "val": ["p02_ED"]}], meta, "mine.json")


def test_each_fold_pretrains_without_its_validation_images_unless_shared():
    from spcl_nnunet.data.splits import make_fold_table
    from spcl_nnunet.experiment.plan import pretraining_fold, pretraining_note

    table = cross_validation_folds(heart_meta(), n_folds=3)
    assert [pretraining_fold(table, spec, shared=False) for spec in table.folds] == [0, 1, 2]
    assert [pretraining_fold(table, spec, shared=True) for spec in table.folds] == [0, 0, 0]
    assert "optimistic" in pretraining_note(table, shared=True)
    assert "never saw that fold's validation images" in pretraining_note(table, shared=False)
    subsets = make_fold_table([f"c{i}" for i in range(6)], ["v0", "v1"], [1, 2], 2, 0)
    assert {pretraining_fold(subsets, spec, shared=False) for spec in subsets.folds} == {0}
