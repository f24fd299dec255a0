"""End-to-end runs of the SP-Con trainers through nnU-Net's own commands on a tiny synthetic dataset.

Everything runs on the CPU with one data-augmentation process: ``nnUNetv2_train`` (pre-training,
resume with ``--c``, fine-tuning with ``-pretrained_weights``), ``nnUNetv2_predict`` and nnU-Net's
evaluation, under the ``smoke`` schedule (``SPCL_SCHEDULE``). The dataset is made and preprocessed
once per session (``tiny_dataset`` in conftest).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_helpers import (TINY_ID, TinyDataset, check, command, nnunet_env, png_size, progress_png_size, run,
                            seeded_commands, smoke_schedule_file, tail, write_crash_once_trainer)
from nnunet_helpers import epochs_in as _epochs_in
from nnunet_helpers import fold_dir as _fold_dir
from nnunet_helpers import in_process_trainer as _trainer
from nnunet_helpers import load_checkpoint as _load
from nnunet_helpers import set_nnunet_env as _set_nnunet_env
from nnunet_helpers import train_command as _train
from spcl_nnunet.contrastive.pacing import gamma_at
from spcl_nnunet.data.sidecars import SIDECAR_FILES
from spcl_nnunet.training.schedules import SCHEDULES

pytestmark = pytest.mark.e2e

PRETRAIN = "SPConPretrainTrainer"
FINETUNE = "SPConFinetuneTrainer"
SMOKE = {"SPCL_SCHEDULE": "smoke"}
EPOCHS = SCHEDULES["smoke"].pretrain["num_epochs_default"]          # 4, fine-tuning too
assert SCHEDULES["smoke"].finetune["num_epochs_default"] == EPOCHS
HEATMAP_EVERY = SCHEDULES["smoke"].pretrain["heatmap_every"]         # 2
CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------ runs (module scope)
@pytest.fixture(scope="module")
def pretrain_run(tiny_dataset: TinyDataset, tmp_path_factory: pytest.TempPathFactory):
    results = tmp_path_factory.mktemp("results_pretrain")
    proc = check(run(_train(TINY_ID, 0, PRETRAIN), tiny_dataset.env(results, **SMOKE)))
    return proc, results, _fold_dir(results, tiny_dataset.name, PRETRAIN)


# fine-tuning that learns within the smoke schedule's 4 epochs: 24 iterations an epoch instead of 3, from
# lr_init 2e-3 (peak 2e-2) instead of 1e-4 (~10 s more CPU time). Under the plain smoke schedule (12 steps at
# <= 1e-3) the model does not learn: its test Dice stays at an untrained network's (numbers below)
LEARNING = {"iterations_per_epoch": 24, "lr_init": 2e-3}
# the foreground-mean test Dice the fine-tuned model must reach. Measured on the tiny dataset from the seeded
# initialisation below, the data augmentation drawn anew each run: with LEARNING 0.193 to 0.322 (8 runs; LV
# 0.40 to 0.47 in each); with 16 iterations an epoch 0.114 to 0.291 (8 runs, two of them with RV and MYO
# at 0; a CI run fell to 0.095), so the 24. The same network untrained (learning rate 0, 5 initialisations)
# 0.015 to 0.052, 0.013 from the seeded one; trained under the plain smoke schedule 0.012 to 0.031 (7 runs)
DICE_FLOOR = 0.10
INIT_SEED = 0     # the forked command's generators: initialisation, sampling and augmentation (seeded_commands)


@pytest.fixture(scope="module")
def finetune_run(tiny_dataset: TinyDataset, pretrain_run):
    _, results, pre_fold = pretrain_run
    weights = pre_fold / "checkpoint_final.pth"
    schedule = smoke_schedule_file(results / "smoke_learning.json", **LEARNING)
    with seeded_commands(INIT_SEED):
        proc = check(run(_train(TINY_ID, 0, FINETUNE, "-pretrained_weights", str(weights)),
                         tiny_dataset.env(results, SPCL_SCHEDULE=str(schedule))))
    return proc, results, _fold_dir(results, tiny_dataset.name, FINETUNE)


# ------------------------------------------------------------------------------------ trainer discovery
@pytest.mark.parametrize("name, module, attr", [
    ("SPConPretrainTrainer", "spcl_nnunet.training.pretrain", "SPConPretrainTrainer"),
    ("SPConFinetuneTrainer", "spcl_nnunet.training.finetune", "SPConFinetuneTrainer"),
    ("SPConPretrainTrainer_hard", "spcl_nnunet.training.pretrain", "SPConPretrainTrainer_hard"),
    ("SPConFinetuneTrainer_paperRecipe", "spcl_nnunet.training.finetune", "SPConFinetuneTrainer_paperRecipe"),
])
def test_nnunet_finds_the_package_classes(monkeypatch: pytest.MonkeyPatch, name: str, module: str, attr: str) -> None:
    import importlib

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from spcl_nnunet.data.environment import trainers_dir

    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    found = recursive_find_trainer_class_by_name(name)
    assert found is getattr(importlib.import_module(module), attr)


def test_nnunetv2_train_under_a_retired_name_names_the_replacement(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    proc = run(_train(TINY_ID, 0, "SPConPretrainTrainer_smoke"), tiny_dataset.env(tmp_path / "results"))
    assert proc.returncode != 0, tail(proc)
    assert "SPConPretrainTrainer_smoke was retired: run -tr SPConPretrainTrainer with SPCL_SCHEDULE=smoke" \
        in proc.stdout, tail(proc)
    assert _epochs_in(proc.stdout) == [] and not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------ sidecars and folds
def test_missing_sidecars_stop_training_then_prepare_installs_them(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    pre = tmp_path / "preprocessed"
    shutil.copytree(tiny_dataset.pre_unprepared, pre)
    empty_raw = tmp_path / "raw_without_dataset"
    empty_raw.mkdir()
    env = nnunet_env(empty_raw, pre, tmp_path / "results", **SMOKE)
    pre_dataset = pre / tiny_dataset.name
    assert not (pre_dataset / "meta_labels.json").exists() and not (pre_dataset / "spcl_folds.json").exists()

    proc = run(_train(TINY_ID, 0, PRETRAIN), env)
    assert proc.returncode != 0, tail(proc)
    assert f"spcl_nnunet prepare -d {TINY_ID}" in proc.stdout, tail(proc)
    assert "MissingSidecarError" in proc.stdout
    assert _epochs_in(proc.stdout) == []                         # stopped before any training
    assert not (pre_dataset / "meta_labels.json").exists()

    proc = check(run([command("spcl_nnunet"), "prepare", "-d", str(TINY_ID)],
                     nnunet_env(tiny_dataset.raw, pre, tmp_path / "results")))
    for name in SIDECAR_FILES:
        assert (pre_dataset / name).read_bytes() == (tiny_dataset.raw_dataset / name).read_bytes()
        assert f"installed {pre_dataset / name}" in proc.stdout
    assert "fold | labeled scans" in proc.stdout


def test_prepare_without_raw_sidecars_fails_cleanly(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(tiny_dataset.raw_dataset, raw / tiny_dataset.name)
    (raw / tiny_dataset.name / "meta_labels.json").unlink()
    proc = run([command("spcl_nnunet"), "prepare", "-d", str(TINY_ID)],
               nnunet_env(raw, tiny_dataset.pre, tmp_path / "results"))
    assert proc.returncode == 2, tail(proc)
    assert "meta_labels.json" in proc.stdout and "Traceback" not in proc.stdout


def test_fold_outside_the_table_lists_the_folds(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    proc = run(_train(TINY_ID, 7, PRETRAIN), tiny_dataset.env(tmp_path / "results", **SMOKE))
    assert proc.returncode != 0, tail(proc)
    assert "fold 7 does not exist" in proc.stdout, tail(proc)
    assert "folds 0..1" in proc.stdout
    table = json.loads((tiny_dataset.pre_dataset / "spcl_folds.json").read_text())
    for spec in table["folds"]:                                  # the table itself is printed
        assert re.search(rf"^\s*{spec['fold']} \|\s*{spec['num_labeled']} \|.*{spec['labeled'][0]}", proc.stdout,
                         flags=re.M), tail(proc)
    assert _epochs_in(proc.stdout) == []


def test_finetune_refuses_fold_with_label_less_cases(tiny_dataset: TinyDataset, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pre = tmp_path / "preprocessed"
    shutil.copytree(tiny_dataset.pre_dataset, pre / tiny_dataset.name)
    meta_file = pre / tiny_dataset.name / "meta_labels.json"
    meta = json.loads(meta_file.read_text())
    folds = json.loads((pre / tiny_dataset.name / "spcl_folds.json").read_text())
    placeholders = sorted(folds["folds"][0]["labeled"])
    meta["unlabeled"] = placeholders
    meta_file.write_text(json.dumps(meta))
    empty_raw = tmp_path / "raw"
    empty_raw.mkdir()
    _set_nnunet_env(monkeypatch, nnunet_env(empty_raw, pre, tmp_path / "results"))

    trainer = _trainer(FINETUNE, fold=0)
    with pytest.raises(ValueError) as err:
        trainer.do_split()
    message = str(err.value)
    assert "unlabeled" in message and "fold 0" in message
    for case in placeholders:
        assert case in message
    # a fold without placeholder cases is accepted
    other = _trainer(FINETUNE, fold=1)
    if not set(folds["folds"][1]["labeled"]) & set(placeholders):
        tr, val = other.do_split()
        assert sorted(tr) == sorted(folds["folds"][1]["labeled"]) and sorted(val) == sorted(folds["val"])


# ------------------------------------------------------------------------------------ pre-training
def test_pretraining_checkpoint(tiny_dataset: TinyDataset, pretrain_run, monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from spcl_nnunet.training.pretrain import SPConPretrainTrainer as T

    proc, _, fold_dir = pretrain_run
    assert _epochs_in(proc.stdout) == list(range(EPOCHS))
    assert not (fold_dir / "checkpoint_latest.pth").exists()     # removed by nnU-Net at the end
    ckpt = _load(fold_dir / "checkpoint_final.pth")
    assert ckpt["trainer_name"] == PRETRAIN
    assert ckpt["current_epoch"] == EPOCHS
    assert {"network_weights", "optimizer_state", "projector_state", "spcon_state", "logging", "init_args"} <= set(ckpt)

    # the projector: Linear(C, 256) -> LeakyReLU -> Linear(256, 256) on the bottleneck's channels
    proj = ckpt["projector_state"]
    assert proj["mlp.0.weight"].shape[0] == 256 and proj["mlp.2.weight"].shape == (256, 256)

    spcon = ckpt["spcon_state"]
    assert spcon["gamma"] == gamma_at(EPOCHS - 1, EPOCHS, 2.0, 50.0, 0.5)
    assert (spcon["gamma_start"], spcon["gamma_end"], spcon["gamma_power"]) == (T.gamma_start, T.gamma_end,
                                                                                 T.gamma_power)
    assert spcon["meta_label_weights"] == {"position": 1.0}

    log = ckpt["logging"]
    assert log["gamma"] == [gamma_at(e, EPOCHS, 2.0, 50.0, 0.5) for e in range(EPOCHS)]
    for key in ("mean_positive_weight", "contrastive_loss", "train_losses", "val_losses", "lrs",
                "epoch_start_timestamps", "epoch_end_timestamps", "unweighted_loss_train", "unweighted_loss_val"):
        assert len(log[key]) == EPOCHS, key
        assert all(np.isfinite(v) for v in log[key]), (key, log[key])
    assert all(0.0 <= w <= 1.0 for w in log["mean_positive_weight"])
    assert log["contrastive_loss"] == log["train_losses"]
    # the unweighted L_con of the same batches: every weight 1 >= w_ij, so never below L_sp
    for weighted, unweighted in ((log["train_losses"], log["unweighted_loss_train"]),
                                 (log["val_losses"], log["unweighted_loss_val"])):
        assert all(0.0 < u and w <= u + 1e-6 for w, u in zip(weighted, unweighted)), (weighted, unweighted)
    assert log["unweighted_loss_train"][0] > log["train_losses"][0] + 0.1   # gamma_start 2 drops most pairs
    assert "mean_fg_dice" not in log                             # no segmentation validation in pre-training

    # every key of the network, accepted by nnU-Net's -pretrained_weights loader for a fresh network
    _set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    finetuner = _trainer(FINETUNE)
    finetuner.initialize()                                       # builds the network as fine-tuning does
    network = finetuner.network
    assert set(ckpt["network_weights"]) == set(network.state_dict())
    load_pretrained_weights(network, str(fold_dir / "checkpoint_final.pth"))
    state = network.state_dict()
    for key, value in ckpt["network_weights"].items():
        if ".seg_layers." not in key:
            assert torch.equal(state[key], value.cpu()), key


def test_pretraining_pictures(pretrain_run) -> None:
    _, _, fold_dir = pretrain_run
    heatmaps = [fold_dir / "self_paced_weights" / f"epoch_{e:04d}.png" for e in range(0, EPOCHS, HEATMAP_EVERY)]
    assert len(heatmaps) == 2 and sorted((fold_dir / "self_paced_weights").glob("*.png")) == heatmaps
    for picture in (fold_dir / "progress.png", *heatmaps):
        assert picture.is_file(), picture
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nnU-Net's three plots + 2 panels: (L_sp, mean positive weight | gamma), (unweighted L_con train, val)
    assert png_size(fold_dir / "progress.png") == progress_png_size(2)


def test_checkpoint_latest_by_elapsed_time_then_resume(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    """checkpoint_latest.pth at most once per checkpoint_interval_s (60 s here), on a clock the test sets:
    0 s at the start, 100 s after epoch 0, 130 s after epoch 1. Epoch 0's end is due (100 s), epoch 1's
    is not (30 s since): the crash after epoch 1 loses epoch 1, less than the interval, and --c
    redoes it from the checkpoint of epoch 0."""
    trainer_dir = tmp_path / "extra_trainers"
    name = "CrashOnceTimedBaselineTrainer"
    clock = ("    def checkpoint_clock(self):\n"
             "        if not getattr(self, '_clock_started', False):   # read once at the start of training\n"
             "            self._clock_started = True\n"
             "            return 0.0\n"
             "        return {0: 100.0, 1: 130.0}.get(self.current_epoch, 130.0 + 30 * self.current_epoch)\n")
    write_crash_once_trainer(trainer_dir, name, "spcl_nnunet.training.finetune", "SPConBaselineTrainer", clock,
                             num_epochs_default=3, iterations_per_epoch=2, val_iterations_per_epoch=1,
                             checkpoint_every=1, checkpoint_interval_s=60.0, final_validation=False,
                             progress_plot_every=3)
    marker, results = tmp_path / "crashed", tmp_path / "results"
    env = nnunet_env(tiny_dataset.raw, tiny_dataset.pre, results, extra_trainer_dirs=[trainer_dir],
                     SPCL_TEST_CRASH_MARKER=str(marker))
    fold_dir = _fold_dir(results, tiny_dataset.name, name)
    proc = run(_train(TINY_ID, 0, name), env)
    assert proc.returncode == 3 and _epochs_in(proc.stdout) == [0, 1], tail(proc)
    assert "checkpoint_latest.pth after epoch 0 (100 s since the last one; at most every 60 s" in proc.stdout
    assert "checkpoint_latest.pth after epoch 1" not in proc.stdout
    saved = _load(fold_dir / "checkpoint_latest.pth")
    assert saved["current_epoch"] == 1 and len(saved["logging"]["train_losses"]) == 1
    proc = check(run(_train(TINY_ID, 0, name, "--c"), env))
    assert _epochs_in(proc.stdout) == [1, 2], tail(proc)
    final = _load(fold_dir / "checkpoint_final.pth")
    assert final["current_epoch"] == 3 and len(final["logging"]["train_losses"]) == 3
    assert final["logging"]["train_losses"][0] == saved["logging"]["train_losses"][0]


def test_resume_with_c(tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer_dir = tmp_path / "extra_trainers"
    name = "CrashOncePretrainTrainer"
    write_crash_once_trainer(trainer_dir, name, "spcl_nnunet.training.pretrain", "SPConPretrainTrainer",
                             num_epochs_default=3, iterations_per_epoch=2, val_iterations_per_epoch=1,
                             checkpoint_every=1, heatmap_every=0, num_scans_per_batch=2)
    marker = tmp_path / "crashed"
    results = tmp_path / "results"
    env = nnunet_env(tiny_dataset.raw, tiny_dataset.pre, results, extra_trainer_dirs=[trainer_dir],
                     SPCL_TEST_CRASH_MARKER=str(marker))
    fold_dir = _fold_dir(results, tiny_dataset.name, name)

    # first run: epochs 0 and 1, then the "crash"
    proc = run(_train(TINY_ID, 0, name), env)
    assert proc.returncode == 3, tail(proc)
    assert marker.exists()
    assert _epochs_in(proc.stdout) == [0, 1]
    latest = fold_dir / "checkpoint_latest.pth"
    assert latest.is_file() and not (fold_dir / "checkpoint_final.pth").exists()
    saved_copy = tmp_path / "checkpoint_latest_copy.pth"
    shutil.copyfile(latest, saved_copy)                          # on_train_end deletes checkpoint_latest.pth
    saved = _load(saved_copy)
    assert saved["current_epoch"] == 2
    assert saved["spcon_state"]["gamma"] == gamma_at(1, 3, 2.0, 50.0, 0.5)
    assert len(saved["logging"]["gamma"]) == 2

    # in process: nnU-Net's trainer construction + load_checkpoint restore the SP-Con state exactly
    _set_nnunet_env(monkeypatch, env)
    trainer = _trainer(name)
    trainer.load_checkpoint(str(saved_copy))
    assert trainer.current_epoch == 2
    assert trainer.current_gamma == saved["spcon_state"]["gamma"]
    loaded = trainer.projector.state_dict()
    assert set(loaded) == set(saved["projector_state"])
    for key, value in saved["projector_state"].items():
        assert torch.equal(loaded[key], value), key
    network = trainer.unwrapped_network().state_dict()
    for key, value in saved["network_weights"].items():
        assert torch.equal(network[key], value), key
    projector_params = {id(p) for p in trainer.projector.parameters()}
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert projector_params <= optimised                         # the restored projector is the one trained
    assert trainer.logger.get_value("gamma", None) == saved["logging"]["gamma"]

    # second run with --c: continues at epoch 2 and finishes
    proc = check(run(_train(TINY_ID, 0, name, "--c"), env))
    assert _epochs_in(proc.stdout) == [2], tail(proc)
    resumed_logs = [p for p in fold_dir.glob("training_log_*.txt") if 2 in _epochs_in(p.read_text())]
    assert len(resumed_logs) == 1 and _epochs_in(resumed_logs[0].read_text()) == [2]
    final = _load(fold_dir / "checkpoint_final.pth")
    assert final["current_epoch"] == 3
    assert not latest.exists()
    log = final["logging"]
    for key, values in log.items():
        assert len(values) == 3, (key, values)
    assert log["gamma"] == [gamma_at(e, 3, 2.0, 50.0, 0.5) for e in range(3)]
    assert log["gamma"][:2] == saved["logging"]["gamma"]
    assert log["contrastive_loss"][:2] == saved["logging"]["contrastive_loss"]
    assert final["spcon_state"]["gamma"] == gamma_at(2, 3, 2.0, 50.0, 0.5)
    assert not torch.equal(final["projector_state"]["mlp.2.weight"], saved["projector_state"]["mlp.2.weight"])


# ------------------------------------------------------------------------------------ fine-tuning
def test_finetuning_with_pretrained_weights(finetune_run) -> None:
    proc, _, fold_dir = finetune_run
    assert "Loading pretrained weights from file" in proc.stdout
    assert str(Path(f"{PRETRAIN}__nnUNetPlans__2d") / "fold_0" / "checkpoint_final.pth") in proc.stdout
    assert "runs without -pretrained_weights" not in proc.stdout   # the warning of a random encoder
    assert _epochs_in(proc.stdout) == list(range(EPOCHS))
    assert "Fold 0: 1 labeled scan(s)" in proc.stdout
    summary = json.loads((fold_dir / "validation" / "summary.json").read_text())
    assert {"1", "2", "3"} <= set(summary["mean"])
    ckpt = _load(fold_dir / "checkpoint_final.pth")
    assert ckpt["trainer_name"] == FINETUNE
    assert "projector_state" not in ckpt


def test_finetuned_model_predicts_and_evaluates(tiny_dataset: TinyDataset, finetune_run, tmp_path: Path) -> None:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder_simple

    _, results, _ = finetune_run
    images = tiny_dataset.raw_dataset / "imagesTs"
    out = tmp_path / "pred"
    check(run([command("nnUNetv2_predict"), "-i", images, "-o", out, "-d", str(TINY_ID), "-c", "2d", "-f", "0",
               "-tr", FINETUNE, "-device", "cpu", "-npp", "1", "-nps", "1"], tiny_dataset.env(results)))
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in images.glob("*_0000.nii.gz"))
    assert cases
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in cases]
    for case in cases:
        image = sitk.ReadImage(str(images / f"{case}_0000.nii.gz"))
        pred = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert pred.GetSize() == image.GetSize()
        np.testing.assert_allclose(pred.GetSpacing(), image.GetSpacing(), rtol=1e-5)
        np.testing.assert_allclose(pred.GetOrigin(), image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(pred.GetDirection(), image.GetDirection(), atol=1e-6)
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2, 3}

    summary_file = tmp_path / "summary.json"
    compute_metrics_on_folder_simple(str(tiny_dataset.raw_dataset / "labelsTs"), str(out), [1, 2, 3],
                                     str(summary_file), num_processes=1)
    summary = json.loads(summary_file.read_text())
    assert len(summary["metric_per_case"]) == len(cases)
    for label in ("1", "2", "3"):
        dice = summary["mean"][label]["Dice"]
        assert 0.0 <= dice <= 1.0
    # a model that learned from its labeled scan: an untrained one, one trained without the labels (all
    # background) or one that never took an optimizer step stays below the floor (DICE_FLOOR's measurements)
    assert summary["foreground_mean"]["Dice"] >= DICE_FLOOR, summary["mean"]
