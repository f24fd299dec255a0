"""The own-dataset commands on other file types (nnU-Net's reader/writer, real headers) and their
refusals: each names the file or value, and leaves the dataset as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import (check, command, fold_dir, nnunet_env, plan_and_preprocess, run, smoke_schedule_file,
                            train_command)
from own_dataset import DATASET_ID, DATASET_NAME, DIRECTION, make_plain_dataset, write_image
from spcl_nnunet import cli


@pytest.mark.e2e
@pytest.mark.parametrize("ending", [".nrrd"])   # .mha is read and written by the same SimpleITKIO
def test_own_dataset_with_other_file_endings(tmp_path: Path, ending: str):
    """The own-dataset commands and the trainers on a dataset in another file type: nnU-Net reads
    it through its reader/writer, the placeholders and the predictions (``nnUNetv2_predict`` on the
    test scans, through the reader/writer nnU-Net's final validation uses too) are written in the same
    type with the images' geometry (oblique direction, 6.5 mm slices)."""
    raw, unlabeled = make_plain_dataset(tmp_path, ending, labeled_subjects=3, unlabeled_subjects=1, test_subjects=1)
    results = tmp_path / "nnUNet_results"
    schedule = smoke_schedule_file(tmp_path / "smoke_without_final_validation.json", final_validation=False)
    env = nnunet_env(tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed", results, SPCL_SCHEDULE=str(schedule),
                     OMP_WAIT_POLICY="PASSIVE")
    spcl = command("spcl_nnunet")
    check(run([spcl, "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled)], env))
    check(run([spcl, "metalabels", "-d", str(DATASET_ID), "--patient", "^(sub-[0-9]+)", "--label",
               "phase=_(ED|ES)$"], env))
    assert sorted(p.name for p in (raw / "labelsTr").iterdir())[-2:] == [f"sub-05_ED{ending}", f"sub-05_ES{ending}"]
    plan_and_preprocess(DATASET_ID, env)
    check(run([spcl, "folds", "-d", str(DATASET_ID), "--nfolds", "3"], env))
    check(run([spcl, "prepare", "-d", str(DATASET_ID)], env))
    assert sorted(json.loads((tmp_path / "nnUNet_preprocessed" / DATASET_NAME / "meta_labels.json").read_text())
                  ["unlabeled"]) == ["sub-05_ED", "sub-05_ES"]
    # training reads nnU-Net's preprocessed arrays whatever the raw file type: one trainer (SP-Con + Mean
    # Teacher: meta-labels and label-less cases) is enough to reach a model that predicts
    check(run(train_command(DATASET_ID, 0, "SPConMeanTeacherTrainer"), env))
    assert (fold_dir(results, DATASET_NAME, "SPConMeanTeacherTrainer") / "checkpoint_final.pth").is_file()
    check(run([command("nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "pred"), "-d",
               str(DATASET_ID), "-c", "2d", "-f", "0", "-tr", "SPConMeanTeacherTrainer", "-device", "cpu",
               "-npp", "0", "-nps", "0"], env))
    cases = ["sub-04_ED", "sub-04_ES"]
    assert sorted(p.name for p in (tmp_path / "pred").glob(f"*{ending}")) == [f"{c}{ending}" for c in cases]
    for case in cases:
        predicted = sitk.ReadImage(str(tmp_path / "pred" / f"{case}{ending}"))
        image = sitk.ReadImage(str(raw / "imagesTs" / f"{case}_0000{ending}"))
        assert predicted.GetSize() == image.GetSize()
        assert np.allclose(predicted.GetSpacing(), image.GetSpacing(), atol=1e-4)
        assert np.allclose(predicted.GetDirection(), DIRECTION, atol=1e-6)


# ------------------------------------------------------------------------------------------ refusals
def cli_fails(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def plain(tmp_path: Path, monkeypatch):
    raw, unlabeled = make_plain_dataset(tmp_path, labeled_subjects=3, unlabeled_subjects=1, test_subjects=0)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "nnUNet_raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "nnUNet_preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "nnUNet_results"))
    return raw, unlabeled


def test_metalabels_case_without_pattern_match(plain, capsys):
    raw, _ = plain
    (raw / "imagesTr" / "sub-01_ED_0000.nii.gz").rename(raw / "imagesTr" / "subject1_ED_0000.nii.gz")
    (raw / "labelsTr" / "sub-01_ED.nii.gz").rename(raw / "labelsTr" / "subject1_ED.nii.gz")
    before = snapshot(raw)
    err = cli_fails(capsys, "metalabels", "-d", str(DATASET_ID), "--patient", "^(sub-[0-9]+)")
    assert "pattern '^(sub-[0-9]+)' does not match 1 case id(s)" in err and "subject1_ED" in err
    assert snapshot(raw) == before


def test_metalabels_refuses_csv_row_of_unknown_case_and_single_valued_label(plain, capsys, tmp_path):
    raw, _ = plain
    table = tmp_path / "sites.csv"
    rows = [f"sub-0{s}_{p},site{s % 2}" for s in (1, 2, 3) for p in ("ED", "ES")]
    table.write_text("case,site\n" + "\n".join(rows + ["sub-99_ED,site1"]) + "\n")
    err = cli_fails(capsys, "metalabels", "-d", str(DATASET_ID), "--csv", str(table))
    assert f"{table}, line 8: case 'sub-99_ED' is not a case of imagesTr" in err
    table.write_text("case,site\n" + "\n".join(f"sub-0{s}_{p},A" for s in (1, 2, 3) for p in ("ED", "ES")) + "\n")
    err = cli_fails(capsys, "metalabels", "-d", str(DATASET_ID), "--csv", str(table))
    assert "meta-label 'site'" in err and "same value 'A' for all 6 cases" in err
    assert not (raw / "meta_labels.json").exists()
    table.write_text("case,site\n" + "\n".join(rows) + "\n")
    assert cli.main(["metalabels", "-d", str(DATASET_ID), "--csv", str(table), "--label", "phase=_(ED|ES)$"]) == 0
    meta = json.loads((raw / "meta_labels.json").read_text())
    assert meta["cases"]["sub-03_ES"] == {"patient": "sub-03_ES", "phase": "ES", "site": "site1"}


def test_add_unlabeled_refuses_wrong_channel_count(plain, capsys):
    raw, unlabeled = plain
    image = next(unlabeled.iterdir())
    case = image.name[:-len(".nii.gz")]
    image.rename(unlabeled / f"{case}_0000.nii.gz")
    (unlabeled / f"{case}_0001.nii.gz").write_bytes((unlabeled / f"{case}_0000.nii.gz").read_bytes())
    before = snapshot(raw)
    err = cli_fails(capsys, "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled))
    assert f"case {case!r} has channel file(s) [0, 1], but the dataset has 1 channel(s)" in err
    assert snapshot(raw) == before and not [p for p in raw.iterdir() if p.name.startswith(".")]


def test_add_unlabeled_refuses_4d_image(plain, capsys):
    raw, unlabeled = plain
    volume = np.zeros((2, 5, 32, 32), dtype=np.float32)
    image = sitk.JoinSeries([sitk.GetImageFromArray(v) for v in volume])
    sitk.WriteImage(image, str(unlabeled / "sub-50_ED.nii.gz"))
    before = snapshot(raw)
    err = cli_fails(capsys, "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled))
    assert "sub-50_ED.nii.gz: a 4-D image" in err and "3-D" in err
    assert snapshot(raw) == before


def test_add_unlabeled_refuses_duplicate_case_id_and_other_file_type(plain, capsys):
    raw, unlabeled = plain
    (unlabeled / "sub-01_ED.nii.gz").write_bytes((raw / "imagesTr" / "sub-01_ED_0000.nii.gz").read_bytes())
    before = snapshot(raw)
    err = cli_fails(capsys, "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled))
    assert "case id(s) already in" in err and "sub-01_ED" in err
    assert snapshot(raw) == before
    (unlabeled / "sub-01_ED.nii.gz").unlink()
    write_image(np.zeros((5, 32, 32), np.float32), unlabeled / "extra.nrrd")
    err = cli_fails(capsys, "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled))
    assert "not of the dataset's file type '.nii.gz'" in err and "extra.nrrd" in err
    assert snapshot(raw) == before


def test_folds_refuse_user_splits_that_validate_on_unlabeled_case(plain, capsys, tmp_path):
    raw, unlabeled = plain
    assert cli.main(["add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled)]) == 0
    assert cli.main(["metalabels", "-d", str(DATASET_ID), "--patient", "^(sub-[0-9]+)"]) == 0
    capsys.readouterr()
    own = tmp_path / "my_splits.json"
    own.write_text(json.dumps([{"train": ["sub-01_ED", "sub-01_ES", "sub-02_ED", "sub-02_ES"],
                                "val": ["sub-03_ED", "sub-04_ES"]}]))
    before = snapshot(raw)
    err = cli_fails(capsys, "folds", "-d", str(DATASET_ID), "--splits", str(own))
    assert f"{own}: fold 0 validates on label-less case(s) sub-04_ES" in err
    own.write_text(json.dumps([{"train": ["sub-01_ED", "sub-02_ED", "sub-02_ES"], "val": ["sub-01_ES", "sub-03_ED"]}]))
    err = cli_fails(capsys, "folds", "-d", str(DATASET_ID), "--splits", str(own))
    assert "fold 0 has patient(s) in both train and val: sub-01: sub-01_ED, sub-01_ES" in err
    assert snapshot(raw) == before
    own.write_text(json.dumps([{"train": ["sub-01_ED", "sub-01_ES", "sub-02_ED", "sub-02_ES"],
                                "val": ["sub-03_ED", "sub-03_ES"]}]))
    assert cli.main(["folds", "-d", str(DATASET_ID), "--splits", str(own)]) == 0
    assert json.loads((raw / "splits_final.json").read_text()) == json.loads(own.read_text())


def test_placeholders_do_not_move_nnunet_intensity_statistics(plain, tmp_path):
    """nnU-Net's fingerprint with and without the placeholders: the foreground intensity statistics
    (what CT normalisation uses) are equal, the spacings count every scan."""
    raw, unlabeled = plain
    env = nnunet_env(tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed", tmp_path / "nnUNet_results")
    fingerprint = tmp_path / "nnUNet_preprocessed" / DATASET_NAME / "dataset_fingerprint.json"
    extract = [command("nnUNetv2_extract_fingerprint"), "-d", str(DATASET_ID), "-np", "1", "--clean"]
    check(run(extract, env))
    before = json.loads(fingerprint.read_text())
    check(run([command("spcl_nnunet"), "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled)], env))
    check(run(extract, env))
    after = json.loads(fingerprint.read_text())
    # order statistics equal; mean and std agree to 1e-4 relative (measured: 308.3169 against 308.3237 on
    # this data: an empty sample array of a placeholder turns nnU-Net's concatenated float32 samples into
    # float64, which changes how the mean is accumulated)
    for channel, stats in before["foreground_intensity_properties_per_channel"].items():
        now = after["foreground_intensity_properties_per_channel"][channel]
        assert set(now) == set(stats)
        for key in ("min", "max", "median", "percentile_00_5", "percentile_99_5"):
            assert now[key] == stats[key], key
        for key in ("mean", "std"):
            assert now[key] == pytest.approx(stats[key], rel=1e-4), key
    assert len(after["spacings"]) == len(before["spacings"]) + 2
