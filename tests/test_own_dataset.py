"""The README's "Your own dataset" commands, run as written on a plain nnU-Net dataset the test
generates (own case naming, two meta-labels, label-less scans in a separate folder, real headers),
and the refusals of the own-dataset commands.

The block runs in bash exactly as the README has it, with the substitutions a CPU test needs (listed
in ``SUBSTITUTIONS`` and stated in the README): the trainers' smoke schedule (``SPCL_SCHEDULE=smoke``),
``-device cpu`` (and nnU-Net's sequential prediction, ``-npp 0 -nps 0``), a 10-iteration subclass of
nnU-Net's stock ``nnUNetTrainer`` for the 1000-epoch original (``STOCK_SHORT``: nothing but its
length changed, like nnU-Net's own ``nnUNetTrainer_1epoch``), and ``--schedule smoke --folds 0 1`` on
the experiment.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import check, command, fold_dir, nnunet_env, plan_and_preprocess, run, tail, train_command
from own_dataset import DATASET_ID, DATASET_NAME, DIRECTION, SPACING, make_plain_dataset, write_image
from spcl_nnunet import cli

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- own-dataset-commands"
STOCK_SHORT = "nnUNetTrainer_10iterations"
STOCK_SHORT_MODULE = f"""import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {STOCK_SHORT}(nnUNetTrainer):
    \"\"\"nnU-Net's stock trainer, 1 epoch of 10 iterations (test length).\"\"\"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 10
        self.num_val_iterations_per_epoch = 2
"""
SUBSTITUTIONS = (   # (pattern, replacement, why)
    (r"^(nnUNetv2_train .*)$", r"\1 -device cpu", "this machine has no GPU"),
    (r"^(nnUNetv2_predict .*)$", r"\1 -device cpu -npp 0 -nps 0", "no GPU; nnU-Net's sequential prediction"),
    (r"-tr nnUNetTrainer ", f"-tr {STOCK_SHORT} ", "nnU-Net's stock trainer at a test's length"),
    (r"^(spcl_nnunet experiment .*)$", r"\1 --schedule smoke --folds 0 1", "a smoke-sized verdict on two folds"),
)


def readme_block() -> str:
    """The bash block that follows the own-dataset marker in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, "README.md lost its own-dataset command block marker"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], flags=re.S)
    assert block, "no ```bash block after the own-dataset marker"
    return block.group(1)


def as_run_here(block: str) -> str:
    for pattern, replacement, _ in SUBSTITUTIONS:
        block, count = re.subn(pattern, replacement, block, flags=re.M)
        assert count, f"substitution {pattern!r} matched nothing: the README block changed"
    return block


def test_readme_block_is_what_the_test_runs():
    block = readme_block()
    for needed in ("spcl_nnunet add-unlabeled", "spcl_nnunet metalabels", "nnUNetv2_plan_and_preprocess",
                   "spcl_nnunet folds", "-tr SPConPretrainTrainer", "-tr SPConFinetuneTrainer ",
                   "-tr SPConFinetuneTrainer_nnUNetRecipe", "-tr SPConMeanTeacherTrainer", "-tr nnUNetTrainer ",
                   "nnUNetv2_predict", "nnUNetv2_evaluate_folder", "spcl_nnunet experiment"):
        assert needed in block, f"README's own-dataset block lacks {needed!r}"
    assert f"-tr {STOCK_SHORT} " in as_run_here(block) and "-tr nnUNetTrainer " not in as_run_here(block)


@pytest.mark.e2e
def test_readme_own_dataset_commands(tmp_path: Path):
    raw, unlabeled = make_plain_dataset(tmp_path)
    pre, results = tmp_path / "nnUNet_preprocessed", tmp_path / "nnUNet_results"
    stock = tmp_path / "stock_trainer"
    stock.mkdir()
    (stock / "stock_short.py").write_text(STOCK_SHORT_MODULE)
    env = nnunet_env(tmp_path / "nnUNet_raw", pre, results, extra_trainer_dirs=[stock], SPCL_SCHEDULE="smoke",
                     OMP_WAIT_POLICY="PASSIVE")
    script = "set -euo pipefail\n" + as_run_here(readme_block())
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1500)
    log = proc.stdout
    (tmp_path / "readme_block.log").write_text(log)
    assert proc.returncode == 0, tail(proc, 12000)

    # 1-2: label-less scans with placeholders of the image's geometry, listed; meta-labels
    meta = json.loads((raw / "meta_labels.json").read_text())
    unlabeled_cases = sorted(p.name[:-len(".nii.gz")] for p in unlabeled.iterdir())
    assert meta["unlabeled"] == unlabeled_cases == ["sub-09_ED", "sub-09_ES", "sub-10_ED", "sub-10_ES"]
    assert meta["cases"]["sub-03_ES"] == {"patient": "sub-03", "phase": "ES"}
    assert json.loads((raw / "dataset.json").read_text())["numTraining"] == 16
    placeholder = sitk.ReadImage(str(raw / "labelsTr" / "sub-09_ED.nii.gz"))
    image = sitk.ReadImage(str(raw / "imagesTr" / "sub-09_ED_0000.nii.gz"))
    assert placeholder.GetSize() == image.GetSize() and placeholder.GetSize()[2] % 2 == 1
    assert np.allclose(placeholder.GetSpacing(), SPACING, atol=1e-4)
    assert np.allclose(placeholder.GetDirection(), DIRECTION, atol=1e-6)
    assert not sitk.GetArrayFromImage(placeholder).any()
    assert (raw / "imagesTr" / "sub-09_ED_0000.nii.gz").read_bytes() == (unlabeled / "sub-09_ED.nii.gz").read_bytes()

    # 3: folds over the labeled cases only, patients never split, nnU-Net's stock trainer sees no placeholder
    splits = json.loads((pre / DATASET_NAME / "splits_final.json").read_text())
    assert len(splits) == 5
    for fold in splits:
        assert not set(fold["train"] + fold["val"]) & set(unlabeled_cases)
        patients = lambda cases: {c.rsplit("_", 1)[0] for c in cases}   # noqa: E731
        assert not patients(fold["train"]) & patients(fold["val"])
    assert sorted(c for fold in splits for c in fold["val"]) == sorted(set(meta["cases"]) - set(unlabeled_cases))
    stock_log = next((results / DATASET_NAME / f"{STOCK_SHORT}__nnUNetPlans__2d" / "fold_0").glob(
        "training_log_*.txt")).read_text()
    assert f"This split has {len(splits[0]['train'])} training and {len(splits[0]['val'])} validation cases" \
        in stock_log
    assert "Using splits from existing split file" in stock_log

    # 4-6: every training finished; the pre-training pool: every image but fold 0's validation cases
    for trainer in ("SPConPretrainTrainer", "SPConFinetuneTrainer", "SPConFinetuneTrainer_nnUNetRecipe",
                    "SPConMeanTeacherTrainer", STOCK_SHORT):
        assert (results / DATASET_NAME / f"{trainer}__nnUNetPlans__2d" / "fold_0" / "checkpoint_final.pth").is_file()
    pool = 16 - len(splits[0]["val"])
    pretrain_log = next((results / DATASET_NAME / "SPConPretrainTrainer__nnUNetPlans__2d" / "fold_0").glob(
        "training_log_*.txt")).read_text()
    assert re.search(rf"\b{pool} (training )?(images|scans)", pretrain_log), pretrain_log[:3000]
    spcon = results / DATASET_NAME / "SPConPretrainTrainer__nnUNetPlans__2d" / "fold_0" / "checkpoint_final.pth"
    stock_output = log.split(f"Using trainer '{STOCK_SHORT}'")[1].split("Using trainer '")[0]
    assert f"Loading pretrained weights from file  {spcon}" in stock_output     # nnU-Net's own loader
    assert "encoder.stages.0.0.convs.0.conv.weight shape" in stock_output

    # 7: predictions of the 4 test scans, scored by nnU-Net's evaluation
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.nii.gz")) == [
        "sub-07_ED.nii.gz", "sub-07_ES.nii.gz", "sub-08_ED.nii.gz", "sub-08_ES.nii.gz"]
    summary = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 4

    # 8: the verdict on folds 0 and 1, each method against nnU-Net's baseline, paired over the folds
    verdict = json.loads((tmp_path / "heart_experiment" / "validation_results.json").read_text())
    assert verdict["folds"] == "cross_validation" and verdict["evaluated_on"] == "validation"
    runs = {(r["method"], r["fold"]) for r in verdict["runs"]}
    assert runs == {(m, f) for m in ("nnunet", "spcon", "spcon-nnunet", "spcon-mt") for f in (0, 1)}
    for record in verdict["runs"]:
        assert record["validation_cases"] == sorted(splits[record["fold"]]["val"])
    against_nnunet = {c["method"]: c for c in verdict["paired_comparison"] if c["against"] == "nnunet"}
    assert set(against_nnunet) == {"spcon", "spcon-nnunet", "spcon-mt"}
    assert all(c["n"] == 2 and c["splits"] == [0, 1] for c in against_nnunet.values())
    assert "one pre-training per fold" in verdict["pretraining"]
    pretrainings = tmp_path / "heart_experiment" / "pretraining" / "SPConPretrainTrainer" / DATASET_NAME
    assert sorted(p.name for p in (pretrainings / "SPConPretrainTrainer__nnUNetPlans__2d").glob("fold_*")) == \
        ["fold_0", "fold_1"]
    assert "Folds: 5-fold cross-validation" in (tmp_path / "heart_experiment" / "validation_results.md").read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
def test_own_dataset_with_other_file_endings(tmp_path: Path, ending: str):
    """The own-dataset commands and the trainers on a dataset in another file type: nnU-Net reads
    it through its reader/writer, the placeholders and the predictions are written in the same type
    with the images' geometry (oblique direction, 6.5 mm slices)."""
    raw, unlabeled = make_plain_dataset(tmp_path, ending, labeled_subjects=3, unlabeled_subjects=1, test_subjects=1)
    results = tmp_path / "nnUNet_results"
    env = nnunet_env(tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed", results, SPCL_SCHEDULE="smoke",
                     OMP_WAIT_POLICY="PASSIVE")
    spcl = command("spcl_nnunet")
    check(run([spcl, "add-unlabeled", "-d", str(DATASET_ID), "-i", str(unlabeled)], env))
    check(run([spcl, "metalabels", "-d", str(DATASET_ID), "--patient", "^(sub-[0-9]+)", "--label",
               "phase=_(ED|ES)$"], env))
    assert sorted(p.name for p in (raw / "labelsTr").iterdir())[-2:] == [f"sub-05_ED{ending}", f"sub-05_ES{ending}"]
    plan_and_preprocess(DATASET_ID, env)
    check(run([spcl, "folds", "-d", str(DATASET_ID), "--nfolds", "3"], env))
    check(run([spcl, "prepare", "-d", str(DATASET_ID)], env))
    check(run(train_command(DATASET_ID, 0, "SPConPretrainTrainer"), env))
    pretrained = fold_dir(results, DATASET_NAME, "SPConPretrainTrainer") / "checkpoint_final.pth"
    check(run(train_command(DATASET_ID, 0, "SPConMeanTeacherTrainer", "-pretrained_weights", str(pretrained)), env))
    validation = fold_dir(results, DATASET_NAME, "SPConMeanTeacherTrainer") / "validation"
    val_cases = json.loads((raw / "splits_final.json").read_text())[0]["val"]
    assert sorted(p.name for p in validation.glob(f"*{ending}")) == sorted(f"{c}{ending}" for c in val_cases)
    for case in val_cases:
        predicted = sitk.ReadImage(str(validation / f"{case}{ending}"))
        reference = sitk.ReadImage(str(raw / "labelsTr" / f"{case}{ending}"))
        assert predicted.GetSize() == reference.GetSize()
        assert np.allclose(predicted.GetSpacing(), reference.GetSpacing(), atol=1e-4)
        assert np.allclose(predicted.GetDirection(), DIRECTION, atol=1e-6)
    check(run([command("nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "pred"), "-d",
               str(DATASET_ID), "-c", "2d", "-f", "0", "-tr", "SPConMeanTeacherTrainer", "-device", "cpu",
               "-npp", "0", "-nps", "0"], env))
    assert sorted(p.name for p in (tmp_path / "pred").glob(f"*{ending}")) == [f"sub-04_ED{ending}", f"sub-04_ES{ending}"]


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
