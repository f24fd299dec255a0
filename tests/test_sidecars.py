"""Tests of the meta-label / fold sidecars next to the preprocessed dataset (``spcl_nnunet.data.sidecars``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spcl_nnunet.data.metalabels import META_LABELS_FILE, MetaLabels
from spcl_nnunet.data.sidecars import (SIDECAR_FILES, MissingSidecarError, install_sidecars, load_sidecars,
                                  prepare_command)
from spcl_nnunet.data.splits import FOLDS_FILE, SPLITS_FILE, FoldTable
from spcl_nnunet.synthetic import generate_synthetic_dataset

NAME = "Dataset990_SyntheticCardiac"


@pytest.fixture(scope="module")
def source_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("raw"), 990, n_patients=3, n_val_patients=1,
                                      n_test_patients=0, image_size=(32, 32), slices=(3, 4),
                                      labeled_counts=(1, 2), repeats=1)


@pytest.fixture
def raw(source_raw: Path, tmp_path: Path) -> Path:
    """A private copy of the raw dataset folder (tests damage it)."""
    return Path(shutil.copytree(source_raw, tmp_path / "raw" / NAME))


@pytest.fixture
def pre(tmp_path: Path) -> Path:
    folder = tmp_path / "preprocessed" / NAME
    folder.mkdir(parents=True)
    return folder


def test_sidecar_files() -> None:
    assert set(SIDECAR_FILES) == {META_LABELS_FILE, FOLDS_FILE, SPLITS_FILE}


def test_install_copies_the_three_files(raw: Path, pre: Path) -> None:
    written = install_sidecars(raw, pre)
    assert sorted(written) == sorted(pre / name for name in SIDECAR_FILES)
    for name in SIDECAR_FILES:
        assert (pre / name).read_bytes() == (raw / name).read_bytes()
    assert sorted(p.name for p in pre.iterdir()) == sorted(SIDECAR_FILES)   # no temporary files left


def test_install_overwrites_stale_copies(raw: Path, pre: Path) -> None:
    (pre / SPLITS_FILE).write_text("[]")               # e.g. an outdated split
    install_sidecars(raw, pre)
    assert (pre / SPLITS_FILE).read_bytes() == (raw / SPLITS_FILE).read_bytes()


@pytest.mark.parametrize("missing", [[META_LABELS_FILE], [FOLDS_FILE, SPLITS_FILE], list(SIDECAR_FILES)])
def test_install_refuses_raw_without_sidecars(raw: Path, pre: Path, missing: list[str]) -> None:
    for name in missing:
        (raw / name).unlink()
    with pytest.raises(MissingSidecarError) as err:
        install_sidecars(raw, pre)
    message = str(err.value)
    lacks = message.split(" lacks ", 1)[1].split(":", 1)[0]     # "<raw> lacks a, b: ..."
    assert sorted(lacks.split(", ")) == sorted(missing)
    assert str(raw) in message
    assert list(pre.iterdir()) == []                            # nothing copied


def test_install_refuses_missing_preprocessed_folder(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingSidecarError, match="nnUNetv2_plan_and_preprocess"):
        install_sidecars(raw, tmp_path / "nowhere" / NAME)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 2, "slice_partitions": 3, "cases": {}}),
                                     json.dumps({"version": 1, "slice_partitions": 0, "cases": {"a": {}}})])
def test_install_validates_meta_labels_first(raw: Path, pre: Path, content: str) -> None:
    (raw / META_LABELS_FILE).write_text(content)
    with pytest.raises(ValueError, match=META_LABELS_FILE):
        install_sidecars(raw, pre)
    assert list(pre.iterdir()) == []                            # validated before anything is copied


def test_install_validates_folds_against_splits(raw: Path, pre: Path) -> None:
    splits = json.loads((raw / SPLITS_FILE).read_text())
    splits[0]["train"] = splits[0]["val"]
    (raw / SPLITS_FILE).write_text(json.dumps(splits))
    with pytest.raises(ValueError, match=SPLITS_FILE):
        install_sidecars(raw, pre)
    assert list(pre.iterdir()) == []


def test_load_reads_prepared_folder(raw: Path, pre: Path) -> None:
    install_sidecars(raw, pre)
    meta, table, notes = load_sidecars(pre, None, NAME)
    assert notes == []
    assert isinstance(meta, MetaLabels) and isinstance(table, FoldTable)
    assert meta.slice_partitions == 3
    assert set(meta.cases) == set(table.train_pool) | set(table.val)
    assert [len(f.labeled) for f in table.folds] == [1, 2]


def test_load_copies_from_raw_when_preprocessed_lacks_them(raw: Path, pre: Path) -> None:
    meta, table, notes = load_sidecars(pre, raw, NAME)
    for name in SIDECAR_FILES:
        assert (pre / name).read_bytes() == (raw / name).read_bytes()
    assert len(notes) == 1 and str(raw) in notes[0] and str(pre) in notes[0]
    assert set(meta.cases) == set(json.loads((raw / META_LABELS_FILE).read_text())["cases"])
    assert table.val == json.loads((raw / FOLDS_FILE).read_text())["val"]


def test_load_copies_when_only_some_are_missing(raw: Path, pre: Path) -> None:
    # nnUNetv2_plan_and_preprocess copies splits_final.json itself; the other two are missing
    shutil.copyfile(raw / SPLITS_FILE, pre / SPLITS_FILE)
    _, _, notes = load_sidecars(pre, raw, NAME)
    assert notes
    assert all((pre / name).is_file() for name in SIDECAR_FILES)


@pytest.mark.parametrize("raw_state", ["none", "empty", "partial"])
def test_load_without_sidecars_anywhere_names_prepare_command(raw: Path, pre: Path, tmp_path: Path,
                                                              raw_state: str) -> None:
    shutil.copyfile(raw / SPLITS_FILE, pre / SPLITS_FILE)
    if raw_state == "none":
        raw_arg = None
    elif raw_state == "empty":
        raw_arg = tmp_path / "empty_raw"
        raw_arg.mkdir()
    else:
        (raw / FOLDS_FILE).unlink()
        raw_arg = raw
    with pytest.raises(MissingSidecarError) as err:
        load_sidecars(pre, raw_arg, NAME)
    message = str(err.value)
    assert "spcl_nnunet prepare -d 990" in message
    assert META_LABELS_FILE in message and FOLDS_FILE in message
    assert isinstance(err.value, FileNotFoundError)
    assert not (pre / META_LABELS_FILE).exists()                # no partial copy from a partial raw folder


def test_load_rejects_corrupt_meta_labels_naming_the_file(raw: Path, pre: Path) -> None:
    install_sidecars(raw, pre)
    (pre / META_LABELS_FILE).write_text('{"version": 1, "slice_partitions": 3, "cases": ')
    with pytest.raises(ValueError) as err:
        load_sidecars(pre, raw, NAME)
    assert str(pre / META_LABELS_FILE) in str(err.value)


def test_load_rejects_invalid_meta_labels_naming_the_file(raw: Path, pre: Path) -> None:
    install_sidecars(raw, pre)
    data = json.loads((pre / META_LABELS_FILE).read_text())
    case = next(iter(data["cases"]))
    data["cases"][case]["position"] = "top"               # reserved name
    (pre / META_LABELS_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="reserved") as err:
        load_sidecars(pre, raw, NAME)
    assert str(pre / META_LABELS_FILE) in str(err.value)


@pytest.mark.parametrize("name, expected", [
    ("Dataset990_SyntheticCardiac", "spcl_nnunet prepare -d 990"),
    ("Dataset007_Foo_Bar", "spcl_nnunet prepare -d 7"),
    ("MyData", "spcl_nnunet prepare -d MyData"),
])
def test_prepare_command(name: str, expected: str) -> None:
    assert prepare_command(name) == expected
