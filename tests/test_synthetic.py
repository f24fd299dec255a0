"""Tests of the synthetic ACDC-like nnU-Net raw dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spcl_nnunet.data.metalabels import load_meta_labels
from spcl_nnunet.data.splits import load_fold_table
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
    with pytest.raises(ValueError, match="largest labeled count, 50 scans.*use at least 27 patients"):
        generate_synthetic_dataset(tmp_path, 6, **{**kwargs, "labeled_counts": (1, 50)})
    with pytest.raises(ValueError, match="2 patients are too few.*use at least 3 patients"):
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


# ------------------------------------------------------------------------------------ profiles
def _patients(profile, count: int, size: int = 64, seed: int = 0):
    from spcl_nnunet.synthetic.render import draw_patient

    return [draw_patient(np.random.default_rng([seed, i]), np.random.default_rng([seed, i, 7]), (size, size),
                         (8, 10), profile) for i in range(count)]


def test_default_profile_ignores_the_extra_draws() -> None:
    """The default profile draws only what the original generator drew: another ``extra`` stream
    changes nothing (the default dataset stays the one earlier runs measured)."""
    from spcl_nnunet.synthetic import DEFAULT
    from spcl_nnunet.synthetic.render import draw_patient, render_scan

    a = draw_patient(np.random.default_rng([3, 1]), np.random.default_rng(11), (48, 48), (6, 8), DEFAULT)
    b = draw_patient(np.random.default_rng([3, 1]), np.random.default_rng(12), (48, 48), (6, 8), DEFAULT)
    assert a.pathology == b.pathology == "NOR" and a.distractors is None and a.outflow_angle is None
    for phase in ("ED", "ES"):
        image_a, label_a = render_scan(a, phase, np.random.default_rng(5))
        image_b, label_b = render_scan(b, phase, np.random.default_rng(5))
        assert np.array_equal(image_a, image_b) and np.array_equal(label_a, label_b)


def test_acdc_profile_patient_groups() -> None:
    """Dilated hearts have larger cavities, thinner walls and contract less than hypertrophic ones."""
    from dataclasses import replace

    from spcl_nnunet.synthetic import ACDC
    from spcl_nnunet.synthetic.render import render_scan

    stats = {}
    for group in ("DCM", "HCM", "NOR", "ARV"):
        lv, rv, ratio, ejection = [], [], [], []
        for p in _patients(replace(ACDC, pathologies=(group,)), 6):
            assert p.pathology == group
            _, ed = render_scan(p, "ED", np.random.default_rng(0))
            _, es = render_scan(p, "ES", np.random.default_rng(1))
            lv.append((ed == 3).sum())
            rv.append((ed == 1).sum())
            ratio.append((ed == 2).sum() / (ed == 3).sum())
            ejection.append((es == 3).sum() / (ed == 3).sum())
        stats[group] = {"lv": np.mean(lv), "rv": np.mean(rv), "myo/lv": np.mean(ratio), "es/ed": np.mean(ejection)}
    dcm, hcm, nor, arv = stats["DCM"], stats["HCM"], stats["NOR"], stats["ARV"]
    assert dcm["lv"] > 1.2 * nor["lv"] and nor["lv"] > 1.1 * hcm["lv"], stats
    assert hcm["myo/lv"] > 1.3 * nor["myo/lv"] and nor["myo/lv"] > 1.2 * dcm["myo/lv"], stats
    assert dcm["es/ed"] > nor["es/ed"] + 0.15 and nor["es/ed"] > hcm["es/ed"] + 0.08, stats
    assert arv["rv"] > 1.3 * nor["rv"], stats


def test_acdc_profile_dataset(tmp_path: Path) -> None:
    from collections import Counter

    from spcl_nnunet.synthetic import ACDC

    folder = generate_synthetic_dataset(tmp_path, 77, profile="acdc")
    assert folder.name == "Dataset077_SyntheticACDC"
    table = load_fold_table(folder)
    assert (len(table.train_pool), len(table.val), len(table.test)) == (174, 8, 18)   # ACDC's protocol
    assert table.labeled_counts == [1, 2, 4, 8] and len(table.folds) == 8 + 4 + 3 + 3   # splits per count
    assert [(f.num_labeled, f.split) for f in table.folds[:9]] == [(1, s) for s in range(8)] + [(2, 0)]
    # the first three splits of each count are those of a table with 3 splits everywhere
    plain = generate_synthetic_dataset(tmp_path / "plain", 77, profile="acdc", splits_per_count={})
    first = {(f.num_labeled, f.split): f.labeled for f in load_fold_table(plain).folds}
    assert len(first) == 12 and all(f.labeled == first[f.num_labeled, f.split] for f in table.folds if f.split < 3)
    image = _read(next((folder / "imagesTr").glob("*_0000.nii.gz")))
    assert image.GetSize()[:2] == (64, 64) and 7 <= image.GetSize()[2] <= 11
    assert "profile acdc" in json.loads((folder / "dataset.json").read_text())["reference"]
    groups = Counter(p.pathology for p in _patients(ACDC, 100))
    assert set(groups) == {"NOR", "DCM", "HCM", "MINF", "ARV"} and min(groups.values()) >= 10


def test_acdc_profile_small_passes_nnunet_integrity(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = generate_synthetic_dataset(tmp_path, 78, n_patients=5, profile="acdc", n_val_patients=1,
                                        n_test_patients=1, labeled_counts=(1, 2), repeats=1)
    verify_dataset_integrity(str(folder), num_processes=1)
    out = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in out and "Error" not in out and "WARNING: File" not in out
    for label_path in (folder / "labelsTr").glob("*.nii.gz"):
        assert set(np.unique(_array(label_path))) <= {0, 1, 2, 3}


@pytest.mark.parametrize("profile, patients, minimum", [("default", 6, 7), ("acdc", 16, 17)])
def test_too_few_patients_is_refused_before_writing(tmp_path: Path, profile: str, patients: int,
                                                     minimum: int) -> None:
    import subprocess
    import sys

    with pytest.raises(ValueError, match=f"use at least {minimum} patients"):
        generate_synthetic_dataset(tmp_path / "raw", 6, n_patients=patients, profile=profile)
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())
    cli = Path(sys.executable).parent / "spcl_nnunet"
    env = {"PATH": str(Path(sys.executable).parent), "nnUNet_raw": str(tmp_path / "cli_raw")}
    proc = subprocess.run([str(cli), "synthetic", "-d", "990", "--profile", profile, "--patients", str(patients)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and f"use --patients {minimum} or more" in proc.stderr, proc.stderr
    assert "make_fold_table" not in proc.stderr and not (tmp_path / "cli_raw").exists()
    usage = subprocess.run([str(cli), "synthetic", "-h"], env=env, capture_output=True, text=True).stdout
    assert f"/ {minimum} patients" in usage            # the help states each profile's minimum
