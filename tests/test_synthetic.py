"""Tests of the synthetic ACDC-like nnU-Net raw dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spcl_nnunet.metalabels import load_meta_labels
from spcl_nnunet.splits import load_fold_table
from spcl_nnunet.synthetic import DATASET_NAME, generate_synthetic_dataset

SMALL = dict(n_patients=5, seed=7, n_val_patients=1, n_test_patients=1, image_size=(64, 64),
             slices=(6, 9), labeled_counts=(1, 2), repeats=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("raw"), 42, **SMALL)


def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(_read(path))


def _cases(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir())


def test_file_lists(dataset: Path) -> None:
    assert dataset.name == f"Dataset042_{DATASET_NAME}"
    train = _cases(dataset / "imagesTr", "_0000.nii.gz")
    test = _cases(dataset / "imagesTs", "_0000.nii.gz")
    assert len(train) == 8 and len(test) == 2
    assert _cases(dataset / "labelsTr", ".nii.gz") == train
    assert _cases(dataset / "labelsTs", ".nii.gz") == test
    patients = {c.rsplit("_", 1)[0] for c in train + test}
    assert patients == {f"patient{i:03d}" for i in range(1, 6)}
    assert {c.rsplit("_", 1)[0] for c in test}.isdisjoint({c.rsplit("_", 1)[0] for c in train})
    assert all(f"{p}_{ph}" in train + test for p in patients for ph in ("ED", "ES"))
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["numTraining"] == len(train)
    assert info["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert info["channel_names"] == {"0": "cineMRI"} and info["file_ending"] == ".nii.gz"
    assert not [p for p in dataset.parent.iterdir() if p != dataset]   # no temp folders left
    assert dataset.stat().st_mode & 0o777 == 0o755
    assert (dataset / "meta_labels.json").stat().st_mode & 0o777 == 0o644


def test_volumes(dataset: Path) -> None:
    for image_path in sorted(dataset.glob("images*/*_0000.nii.gz")):
        label_path = dataset / image_path.parent.name.replace("images", "labels") / image_path.name.replace(
            "_0000", "")
        image, label = _read(image_path), _read(label_path)
        assert image.GetPixelID() == sitk.sitkFloat32 and label.GetPixelID() == sitk.sitkUInt8
        assert image.GetSize()[:2] == (64, 64) and 6 <= image.GetSize()[2] <= 9
        assert image.GetSize() == label.GetSize()
        spacing = image.GetSpacing()
        assert spacing[:2] == pytest.approx((1.5, 1.5)) and 5.0 <= spacing[2] <= 10.0
        assert label.GetSpacing() == pytest.approx(spacing)
        assert label.GetOrigin() == pytest.approx(image.GetOrigin())
        assert np.abs(image.GetOrigin()).max() > 1.0
        assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
        values = np.unique(sitk.GetArrayFromImage(label))
        assert values.tolist() == [0, 1, 2, 3], label_path.name
        assert np.isfinite(sitk.GetArrayFromImage(image)).all()


def test_anatomy(dataset: Path) -> None:
    correlations = []
    for ed_path in sorted(dataset.glob("labels*/*_ED.nii.gz")):
        ed = _array(ed_path)
        es = _array(ed_path.with_name(ed_path.name.replace("_ED", "_ES")))
        assert (es == 3).sum() < (ed == 3).sum(), ed_path.name
        assert 0.45 < (es == 3).sum() / (ed == 3).sum() < 0.8
        assert (es == 1).sum() < (ed == 1).sum()
        area = (ed == 3).sum(axis=(1, 2))
        heart = np.flatnonzero(area)
        correlations.append(np.corrcoef(heart, area[heart])[0, 1])
    assert np.mean(correlations) < -0.8          # LV shrinks from base (slice 0) to apex


def test_metadata_consistent(dataset: Path) -> None:
    train = _cases(dataset / "imagesTr", "_0000.nii.gz")
    test = _cases(dataset / "imagesTs", "_0000.nii.gz")
    meta = load_meta_labels(dataset)
    meta.check_cases(train, "imagesTr")
    assert meta.slice_partitions == 3 and meta.unlabeled == [] and meta.keys() == ["patient", "phase"]
    assert all(meta.cases[c] == {"patient": c[:10], "phase": c[11:]} for c in train)
    table = load_fold_table(dataset)
    assert sorted(table.train_pool + table.val) == train
    assert table.test == test and len(table.val) == 2 and table.seed == 7
    assert table.labeled_counts == [1, 2] and len(table.folds) == 4


def test_deterministic(dataset: Path, tmp_path: Path) -> None:
    again = generate_synthetic_dataset(tmp_path / "a", 42, **SMALL)
    other = generate_synthetic_dataset(tmp_path / "b", 42, **{**SMALL, "seed": 8})
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.nii.gz"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.nii.gz"))
    for rel in files:
        assert np.array_equal(_array(dataset / rel), _array(again / rel))
        assert _read(dataset / rel).GetSpacing() == _read(again / rel).GetSpacing()
    for name in ("dataset.json", "meta_labels.json", "splits_final.json", "spcl_folds.json"):
        assert (dataset / name).read_text() == (again / name).read_text()
    ours = {p.name: p for p in dataset.rglob("*_0000.nii.gz")}
    theirs = {p.name: p for p in other.rglob("*_0000.nii.gz")}
    assert ours.keys() == theirs.keys()
    for name in ours:
        a, b = _array(ours[name]), _array(theirs[name])
        assert a.shape != b.shape or not np.array_equal(a, b), name


def test_refuses_existing_target(tmp_path: Path) -> None:
    kwargs = {**SMALL, "n_patients": 3, "image_size": (32, 32), "labeled_counts": (1,), "repeats": 1}
    folder = generate_synthetic_dataset(tmp_path, 5, **kwargs)
    stamp = (folder / "dataset.json").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match=folder.name):
        generate_synthetic_dataset(tmp_path, 5, **kwargs)
    assert (folder / "dataset.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    again = generate_synthetic_dataset(tmp_path, 5, **{**kwargs, "seed": 9}, overwrite=True)
    assert again == folder and "seed 9" in (folder / "dataset.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    kwargs = {**SMALL, "n_patients": 3, "image_size": (32, 32), "repeats": 1}
    with pytest.raises(ValueError, match="exceeds"):
        generate_synthetic_dataset(tmp_path, 6, **{**kwargs, "labeled_counts": (1, 50)})
    with pytest.raises(ValueError, match="n_patients"):
        generate_synthetic_dataset(tmp_path, 6, **{**kwargs, "n_patients": 2})
    with pytest.raises(ValueError, match="slices"):
        generate_synthetic_dataset(tmp_path, 6, **{**kwargs, "slices": (2, 4)})
    assert list(tmp_path.iterdir()) == []


def test_nnunet_integrity_check(dataset: Path, capfd: pytest.CaptureFixture) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=1)
    out = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in out
    assert "Error" not in out and "Warning" not in out and "WARNING: File" not in out
