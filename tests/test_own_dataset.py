"""The README's "Your own dataset" commands, run as written on a plain nnU-Net dataset the test
generates (own case naming, two meta-labels, label-less scans in a separate folder, real headers),
run by an e2e test. The other file types and the commands' refusals are in
``test_own_dataset_inputs.py``.

The block runs line by line as the README has it (``run_block``: bash expands each line's words and
runs every line that is not one of the venv's console scripts, such as ``eval`` and assignments; a
console script runs in a forked copy of the test process, ``nnunet_helpers.run``, which saves a new
interpreter's ~8 s of imports per command), with the substitutions a CPU test needs (listed
in ``SUBSTITUTIONS`` and stated in the README): the trainers' smoke schedule without nnU-Net's final
validation (``SPCL_SCHEDULE``: steps 4-6 are checked through their checkpoints and logs; the experiment
validates, under its own ``--schedule smoke``), ``-device cpu`` (and nnU-Net's sequential prediction,
``-npp 0 -nps 0``), one preprocessing process (``-np 1 -npfp 1``), a 10-iteration subclass of nnU-Net's
stock ``nnUNetTrainer`` for the 1000-epoch original (``STOCK_SHORT``: nothing but its length changed,
like nnU-Net's own ``nnUNetTrainer_1epoch``, and its final validation skipped), and
``--schedule smoke --folds 0`` on the experiment (one fold: every fold of a cross-validation runs
the same steps, and each fold's own pre-training and the pairing over folds are tested without
training, ``test_crossval.py`` and ``test_experiment_units.py``; the pairing of trained runs over splits in
``test_experiment.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import BACKGROUND_WORKERS, VENV_BIN, nnunet_env, run, smoke_schedule_file
from own_dataset import DATASET_NAME, DIRECTION, SPACING, make_plain_dataset

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- own-dataset-commands"
STOCK_SHORT = "nnUNetTrainer_10iterations"
STOCK_SHORT_MODULE = f"""import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {STOCK_SHORT}(nnUNetTrainer):
    \"\"\"nnU-Net's stock trainer, 1 epoch of 10 iterations (test length), without its final
    validation (the test checks its log and its checkpoint).\"\"\"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 10
        self.num_val_iterations_per_epoch = 2

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation skipped (test length)")
"""
SUBSTITUTIONS = (   # (pattern, replacement, why)
    (r"^(nnUNetv2_plan_and_preprocess .*)$", r"\1 -np 1 -npfp 1",
     "nnU-Net's preprocessing in one process: its default of 8 processes per step costs more than it saves on 2 cores"),
    (r"^(nnUNetv2_train .*)$", r"\1 -device cpu", "this machine has no GPU"),
    (r"^(nnUNetv2_predict .*)$", r"\1 -device cpu -npp 0 -nps 0", "no GPU; nnU-Net's sequential prediction"),
    (r"-tr nnUNetTrainer ", f"-tr {STOCK_SHORT} ", "nnU-Net's stock trainer at a test's length, no final validation"),
    (r"^(spcl_nnunet experiment .*)$", r"\1 --schedule smoke --folds 0", "a smoke-sized verdict on one fold"),
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


def logical_lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines left out."""
    lines = re.sub(r"\\\n", " ", block).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)


def run_block(block: str, env: dict[str, str], cwd: Path) -> tuple[str, dict[str, str]]:
    """Each command of ``block`` in order, as bash would run it; returns the output of all, each after
    its ``$ line``, and the environment the block leaves. A line whose first word is one of the venv's console scripts has its words expanded
    by bash (variables, quotes) and runs forked (``run``); any other line runs in bash with ``set -a``,
    and the environment it leaves (``eval "$(spcl_nnunet env)"``, ``SPCON=...``) is what the next lines
    get. A failing line fails the test with its output."""
    env, log = dict(env), []
    for line in logical_lines(block):
        log.append(f"$ {line}\n")
        if (VENV_BIN / line.split()[0]).is_file():
            words = bash(f"printf '%s\\0' {line}", env, cwd)
            assert words.returncode == 0, f"{line}: bash could not expand it: {words.stderr.decode()}"
            args = words.stdout.decode().split("\0")[:-1]
            proc = run([str(VENV_BIN / args[0]), *args[1:]], env, timeout=1200, cwd=cwd)
            log.append(proc.stdout)
        else:
            proc = bash(f"set -a\n{{ {line}\n}} 1>&2\nenv -0", env, cwd)
            log.append(proc.stderr.decode())
            if proc.returncode == 0:
                env = dict(item.split("=", 1) for item in proc.stdout.decode().split("\0") if "=" in item)
        assert proc.returncode == 0, f"{line}: exit code {proc.returncode}\n" + "".join(log)[-12000:]
    return "".join(log), env


def test_readme_block_is_what_the_test_runs():
    block = readme_block()
    for needed in ("spcl_nnunet add-unlabeled", "spcl_nnunet metalabels", "nnUNetv2_plan_and_preprocess",
                   "spcl_nnunet folds", "-tr SPConPretrainTrainer", "-tr SPConFinetuneTrainer ",
                   "-tr SPConMeanTeacherTrainer", "-tr nnUNetTrainer ", "--methods nnunet spcon-nnunet",
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
    schedule = smoke_schedule_file(tmp_path / "smoke_without_final_validation.json", final_validation=False)
    env = nnunet_env(tmp_path / "nnUNet_raw", pre, results, extra_trainer_dirs=[stock], SPCL_SCHEDULE=str(schedule),
                     OMP_WAIT_POLICY="PASSIVE", **BACKGROUND_WORKERS)
    block = as_run_here(readme_block())
    log, env = run_block(block, env, tmp_path)
    (tmp_path / "readme_block.log").write_text(log)

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
    assert "final validation skipped (test length)" in stock_log

    # 4-6: every training finished; the pre-training pool: every image but fold 0's validation cases
    for trainer in ("SPConPretrainTrainer", "SPConFinetuneTrainer", "SPConMeanTeacherTrainer", STOCK_SHORT):
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
    assert runs == {(m, f) for m in ("nnunet", "spcon-nnunet") for f in (0,)}
    for record in verdict["runs"]:
        assert record["validation_cases"] == sorted(splits[record["fold"]]["val"])
    against_nnunet = {c["method"]: c for c in verdict["paired_comparison"] if c["against"] == "nnunet"}
    assert set(against_nnunet) == {"spcon-nnunet"}
    assert all(c["n"] == 1 and c["splits"] == [0] for c in against_nnunet.values())
    assert "one pre-training per fold" in verdict["pretraining"]
    pretrainings = tmp_path / "heart_experiment" / "pretraining" / "SPConPretrainTrainer" / DATASET_NAME
    assert sorted(p.name for p in (pretrainings / "SPConPretrainTrainer__nnUNetPlans__2d").glob("fold_*")) == ["fold_0"]
    assert "Folds: 5-fold cross-validation" in (tmp_path / "heart_experiment" / "validation_results.md").read_text()

    # a fold's nnU-Net final validation lost (a crash after the checkpoint): the same experiment command
    # again redoes that validation alone (nnUNetv2_train --val) and keeps the checkpoint
    run_dir = tmp_path / "heart_experiment" / "runs" / "nnunet" / "fold_0"
    trained = run_dir / DATASET_NAME / "SPConBaselineTrainer_nnUNetRecipe__nnUNetPlans__2d" / "fold_0"
    stamp = (trained / "checkpoint_final.pth").stat().st_mtime_ns
    (trained / "validation" / "summary.json").unlink()
    again, _ = run_block(next(line for line in logical_lines(block) if line.startswith("spcl_nnunet experiment")),
                         env, tmp_path)
    assert (trained / "validation" / "summary.json").is_file()
    assert (trained / "checkpoint_final.pth").stat().st_mtime_ns == stamp
    commands = [c for c in (run_dir / "train.log").read_text().splitlines() if c.startswith("$ nnUNetv2_train")]
    assert len(commands) == 2 and commands[1].split()[-1] == "--val", commands
    assert "nnUNetv2_train ran 1 time(s)" in again, again[-3000:]
