"""Tests of labeled-configuration folds and patient-level splits."""

import json
from pathlib import Path

import pytest

from spcl_nnunet.data.splits import (FOLDS_FILE, SPLITS_FILE, FoldTable, load_fold_table, make_fold_table,
                                split_groups, write_fold_files)

POOL = [f"patient{i:03d}_{p}" for i in range(1, 11) for p in ("ED", "ES")]
VAL = ["patient020_ED", "patient020_ES"]
TEST = ["patient030_ED", "patient030_ES"]


def _table(seed: int = 0, counts=(1, 2, 4), repeats: int = 3) -> FoldTable:
    return make_fold_table(POOL, VAL, counts, repeats, seed, test=TEST)


def test_reproducible_and_seed_dependent() -> None:
    assert _table(0) == _table(0)
    assert [f.labeled for f in _table(0).folds] != [f.labeled for f in _table(1).folds]


def test_independent_of_other_counts() -> None:
    a = {(f.num_labeled, f.split): f.labeled for f in _table(counts=(1, 2, 4)).folds}
    b = {(f.num_labeled, f.split): f.labeled for f in _table(counts=(2, 8)).folds}
    assert all(a[(2, s)] == b[(2, s)] for s in range(3))


def test_fold_layout() -> None:
    table = _table()
    assert [(f.fold, f.num_labeled, f.split) for f in table.folds] == [
        (0, 1, 0), (1, 1, 1), (2, 1, 2), (3, 2, 0), (4, 2, 1), (5, 2, 2), (6, 4, 0), (7, 4, 1), (8, 4, 2)]
    pool = set(table.train_pool)
    for f in table.folds:
        assert len(f.labeled) == f.num_labeled == len(set(f.labeled))
        assert set(f.labeled) <= pool
    splits = table.splits_final()
    assert len(splits) == 9
    assert all(s["val"] == sorted(VAL) for s in splits)
    assert all(not set(s["val"]) & set(s["train"]) for s in splits)
    assert [s["train"] for s in splits] == [f.labeled for f in table.folds]
    # the three splits of one count differ (20 choose 4 makes a collision very unlikely)
    assert len({tuple(f.labeled) for f in table.folds if f.num_labeled == 4}) == 3


def test_all_labeled_gets_one_fold() -> None:
    table = _table(counts=(4, len(POOL)))
    assert [(f.fold, f.num_labeled, f.split) for f in table.folds] == [(0, 4, 0), (1, 4, 1), (2, 4, 2),
                                                                       (3, 20, 0)]
    assert table.folds[-1].labeled == sorted(POOL)


def test_splits_per_count_add_folds_and_keep_the_first_draws(tmp_path: Path) -> None:
    table = make_fold_table(POOL, VAL, (1, 2, 4), 3, 0, test=TEST, splits_per_count={1: 8, 2: 4})
    assert [(f.fold, f.num_labeled, f.split) for f in table.folds] == \
        [(i, 1, i) for i in range(8)] + [(8 + i, 2, i) for i in range(4)] + [(12 + i, 4, i) for i in range(3)]
    plain = {(f.num_labeled, f.split): f.labeled for f in _table().folds}
    assert all(f.labeled == plain[f.num_labeled, f.split] for f in table.folds if f.split < 3)
    assert table.splits_final()[8]["train"] == table.folds[8].labeled        # nnU-Net's fold 8 = 2 labeled, split 0
    write_fold_files(tmp_path, table)
    again = load_fold_table(tmp_path)
    assert again == table and json.loads((tmp_path / FOLDS_FILE).read_text())["splits_per_count"] == {"1": 8, "2": 4}
    assert "splits_per_count" not in _table().to_json()                     # files without it read as before
    with pytest.raises(ValueError, match=r"splits_per_count.*labeled count\(s\) \[3\]"):
        make_fold_table(POOL, VAL, (1, 2), 3, 0, splits_per_count={3: 2})
    with pytest.raises(ValueError, match=r"splits_per_count\[1\].*>= 1"):
        make_fold_table(POOL, VAL, (1, 2), 3, 0, splits_per_count={1: 0})


def test_counts_are_sorted() -> None:
    assert _table(counts=(4, 1)).labeled_counts == [1, 4]


@pytest.mark.parametrize("kwargs, expected", [
    (dict(labeled_counts=[0]), ">= 1"),
    (dict(labeled_counts=[21]), "exceeds"),
    (dict(labeled_counts=[2, 2]), "duplicates"),
    (dict(val=[POOL[0]]), "overlap"),
    (dict(test=[POOL[1]]), "overlap"),
    (dict(train_pool=POOL + [POOL[0]]), "more than once"),
    (dict(repeats=0), "repeats"),
])
def test_make_fold_table_errors(kwargs: dict, expected: str) -> None:
    args = dict(train_pool=POOL, val=VAL, labeled_counts=[1, 2], repeats=3, seed=0, test=TEST)
    args.update(kwargs)
    with pytest.raises(ValueError, match=expected):
        make_fold_table(**args)


def test_split_groups_keeps_patients_together() -> None:
    groups = {f"patient{i:03d}": [f"patient{i:03d}_ED", f"patient{i:03d}_ES"] for i in range(1, 21)}
    train, val, test = split_groups(groups, 2, 3, seed=5)
    assert (len(train), len(val), len(test)) == (30, 4, 6)
    assert train == sorted(train) and val == sorted(val) and test == sorted(test)
    assert set(train) | set(val) | set(test) == {c for cases in groups.values() for c in cases}
    for cases in groups.values():
        assert sum(set(cases) <= set(part) for part in (train, val, test)) == 1
    assert split_groups(groups, 2, 3, seed=5) == (train, val, test)
    assert split_groups(groups, 2, 3, seed=6) != (train, val, test)


def test_split_groups_errors() -> None:
    groups = {"a": ["a1"], "b": ["b1"]}
    with pytest.raises(ValueError, match="out of 2 groups"):
        split_groups(groups, 2, 1, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        split_groups(groups, -1, 0, seed=0)
    with pytest.raises(ValueError, match="a1"):
        split_groups({"a": ["a1"], "b": ["a1"]}, 1, 0, seed=0)


def test_file_round_trip(tmp_path: Path) -> None:
    table = _table(seed=3)
    write_fold_files(tmp_path, table)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SPLITS_FILE, FOLDS_FILE])
    assert load_fold_table(tmp_path) == table
    splits = json.loads((tmp_path / SPLITS_FILE).read_text())
    assert splits == table.splits_final()
    text = table.describe()
    assert "labeled scans" in text and len(text.splitlines()) == 2 + 1 + len(table.folds)


def test_mismatch_between_files_detected(tmp_path: Path) -> None:
    write_fold_files(tmp_path, _table())
    splits = json.loads((tmp_path / SPLITS_FILE).read_text())
    splits[4]["train"] = sorted(set(POOL) - set(splits[4]["train"]))[:2]
    (tmp_path / SPLITS_FILE).write_text(json.dumps(splits))
    with pytest.raises(ValueError, match=SPLITS_FILE):
        load_fold_table(tmp_path)
    (tmp_path / SPLITS_FILE).write_text(json.dumps(splits[:3]))
    with pytest.raises(ValueError, match=SPLITS_FILE):
        load_fold_table(tmp_path)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d["folds"][0].update(labeled=["stranger"]), "outside train_pool"),
    (lambda d: d["folds"][1].update(fold=7), "expected folds"),
    (lambda d: d["folds"][0].update(num_labeled=2), "expected folds"),
    (lambda d: d.update(val=d["val"] + [d["train_pool"][0]]), "overlap"),
    (lambda d: d.update(labeled_counts=[2, 1, 4]), "increasing"),
    (lambda d: d.update(splits_per_count={"1": 4}), "expected folds"),          # folds do not match the counts
    (lambda d: d.update(splits_per_count=[8]), "splits_per_count"),
])
def test_folds_file_validation(tmp_path: Path, mutate, expected: str) -> None:
    write_fold_files(tmp_path, _table())
    data = json.loads((tmp_path / FOLDS_FILE).read_text())
    mutate(data)
    (tmp_path / FOLDS_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=expected) as info:
        load_fold_table(tmp_path)
    assert FOLDS_FILE in str(info.value)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=FOLDS_FILE):
        load_fold_table(tmp_path)
    write_fold_files(tmp_path, _table())
    (tmp_path / SPLITS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=SPLITS_FILE):
        load_fold_table(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        write_fold_files(tmp_path / "nowhere", _table())
