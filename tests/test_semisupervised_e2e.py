"""End-to-end runs of the semi-supervised trainers through nnU-Net's own commands (tiny dataset, CPU):
``nnUNetv2_train`` (from scratch, from ``-pretrained_weights``, resumed with ``--c``),
``nnUNetv2_predict`` with the student and with the exported teacher. The trainings run under the
``smoke`` schedule without nnU-Net's final validation (``final_validation = false``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_helpers import (TINY_ID, TinyDataset, check, command, epochs_in, fold_dir, in_process_trainer,
                            load_checkpoint, nnunet_env, png_size, progress_png_size, run, set_nnunet_env,
                            smoke_schedule_file, tail, train_command, write_crash_once_trainer)
from spcl_nnunet.contrastive.pacing import gamma_at, sigmoid_rampup
from spcl_nnunet.networks.teacher import ema_decay_at
from spcl_nnunet.training.schedules import ENV_VAR, SCHEDULES

pytestmark = pytest.mark.e2e

MT, SPCON_MT, ENTMIN, FIXMATCH = "MeanTeacherTrainer", "SPConMeanTeacherTrainer", "EntropyMinTrainer", "FixMatchTrainer"
PRETRAIN = "SPConPretrainTrainer"
SMOKE = SCHEDULES["smoke"]
EPOCHS, ITERATIONS = SMOKE.finetune["num_epochs_default"], SMOKE.finetune["iterations_per_epoch"]   # 4 x 3
STEPS = EPOCHS * ITERATIONS
EMA, RAMPUP = SMOKE.semisupervised["ema_decay"], SMOKE.semisupervised["rampup_epochs"]            # 0.99, 2
HEATMAP_EVERY = SMOKE.semisupervised["heatmap_every"]                                               # 2
LOG_KEYS = {
    MT: {"supervised_loss", "consistency_loss", "rampup_weight", "ema_decay"},
    SPCON_MT: {"supervised_loss", "consistency_loss", "contrastive_loss", "mean_positive_weight", "gamma",
               "rampup_weight", "ema_decay", "unweighted_loss_train", "unweighted_loss_val"},
    ENTMIN: {"supervised_loss", "entropy_loss", "rampup_weight"},
    FIXMATCH: {"supervised_loss", "pseudo_label_loss", "mask_ratio", "rampup_weight", "ema_decay"},
}
# panels below nnU-Net's three plots in progress.png: Mean Teacher (supervised | consistency), (ramp-up | EMA
# decay); SP-Con + Mean Teacher (supervised | consistency), (L_sp, mean weight | gamma), (unweighted L_con
# train, val), (ramp-up | EMA decay); entropy minimisation (supervised | entropy), (ramp-up); FixMatch-style
# (supervised | pseudo-label loss), (mask ratio, ramp-up | EMA decay)
PANELS = {MT: 2, SPCON_MT: 4, ENTMIN: 2, FIXMATCH: 2}
# the weights of the unlabeled terms in the loss (the trainers' defaults, ACDC's values in the paper):
# lambda_reg 0.1 for the Mean-Teacher consistency, 0.1 for the entropy, both ramped up; lambda_sp 5e-3;
# FixMatch-style: lambda_u 1, ramped up
TERMS = {MT: [("consistency_loss", 0.1, True)],
         SPCON_MT: [("consistency_loss", 0.1, True), ("contrastive_loss", 5e-3, False)],
         ENTMIN: [("entropy_loss", 0.1, True)],
         FIXMATCH: [("pseudo_label_loss", 1.0, True)]}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results_semisupervised")


@pytest.fixture(scope="module")
def runs(tiny_dataset: TinyDataset, results: Path) -> dict[str, tuple]:
    """Each trainer once; SP-Con + Mean Teacher starts from an SP-Con pre-training checkpoint."""
    schedule = smoke_schedule_file(results / "smoke_without_final_validation.json", final_validation=False)
    env = tiny_dataset.env(results, **{ENV_VAR: str(schedule)})
    check(run(train_command(TINY_ID, 0, PRETRAIN), env))
    pretrained = fold_dir(results, tiny_dataset.name, PRETRAIN) / "checkpoint_final.pth"
    out = {}
    for trainer in (MT, SPCON_MT, ENTMIN, FIXMATCH):
        extra = ("-pretrained_weights", str(pretrained)) if trainer == SPCON_MT else ()
        proc = check(run(train_command(TINY_ID, 0, trainer, *extra), env))
        out[trainer] = (proc, fold_dir(results, tiny_dataset.name, trainer))
    # the schedule skips nnU-Net's final validation (final_validation = False); --val still runs it
    out["validated"] = check(run(train_command(TINY_ID, 0, MT, "--val"), env))
    return out


def _predict(tiny_dataset: TinyDataset, results: Path, trainer: str, out: Path, *extra: str) -> list[str]:
    images = tiny_dataset.raw_dataset / "imagesTs"
    check(run([command("nnUNetv2_predict"), "-i", images, "-o", out, "-d", str(TINY_ID), "-c", "2d", "-f", "0",
               "-tr", trainer, "-device", "cpu", "-npp", "0", "-nps", "0", *extra], tiny_dataset.env(results)))
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in images.glob("*_0000.nii.gz"))
    assert cases and sorted(p.name for p in out.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in cases]
    for case in cases:
        image = sitk.ReadImage(str(images / f"{case}_0000.nii.gz"))
        pred = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert pred.GetSize() == image.GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2, 3}
    return cases


# ------------------------------------------------------------------------------------ training runs
@pytest.mark.parametrize("trainer", [MT, SPCON_MT, ENTMIN, FIXMATCH])
def test_training_run(runs, trainer: str) -> None:
    proc, folder = runs[trainer]
    assert epochs_in(proc.stdout) == list(range(EPOCHS)), tail(proc)
    assert "unlabeled pool:" in proc.stdout and "validation scans excluded" in proc.stdout
    assert "unlabeled batch 2 per process, labeled 2" in proc.stdout     # the smoke schedule's unlabeled_batch_size
    if trainer == SPCON_MT:
        assert "Loading pretrained weights from file" in proc.stdout
    assert "Final validation skipped (final_validation = False)" in proc.stdout, tail(proc)
    validation = folder / "validation" / "summary.json"
    if trainer == MT:                                   # validated afterwards by 'nnUNetv2_train ... --val'
        assert "Final validation skipped" not in runs["validated"].stdout
        summary = json.loads(validation.read_text())    # nnU-Net's final validation
        assert {"1", "2", "3"} <= set(summary["mean"])
    else:
        assert not validation.exists()
    assert png_size(folder / "progress.png") == progress_png_size(PANELS[trainer])

    ckpt = load_checkpoint(folder / "checkpoint_final.pth")
    assert ckpt["trainer_name"] == trainer and ckpt["current_epoch"] == EPOCHS
    log = ckpt["logging"]
    for key in LOG_KEYS[trainer] | {"train_losses", "val_losses", "mean_fg_dice"}:
        assert len(log[key]) == EPOCHS and all(np.isfinite(v) for v in log[key]), (key, log[key])
    assert log["rampup_weight"] == [sigmoid_rampup(e, RAMPUP) for e in range(EPOCHS)]
    assert all(v > 0 for v in log["supervised_loss"])
    # each epoch's training loss is the supervised loss plus the logged unlabeled terms at their weights (epoch
    # means: the ramp-up is constant within an epoch): a term computed and logged but not in the loss, or in
    # it at another weight or without its ramp-up, fails
    expected = [log["supervised_loss"][e] + sum(w * (log["rampup_weight"][e] if ramped else 1.0) * log[key][e]
                                                for key, w, ramped in TERMS[trainer]) for e in range(EPOCHS)]
    assert log["train_losses"] == pytest.approx(expected, rel=1e-5), (log["train_losses"], expected)
    if trainer == ENTMIN:
        assert "teacher_state" not in ckpt
        # mean pixel entropy of a 4-class softmax: log 4 = 1.386 only for uniform predictions (e.g. the
        # softmax of constant logits, not of the network's). Measured 1.11 to 1.21 (6 runs, 24 epochs)
        assert all(0 < v < np.log(4) - 0.1 for v in log["entropy_loss"]), log["entropy_loss"]
        return
    teacher = ckpt["teacher_state"]
    assert teacher["steps"] == STEPS and teacher["decay"] == EMA
    assert teacher["last_decay"] == ema_decay_at(STEPS, EMA)
    assert set(teacher["weights"]) == set(ckpt["network_weights"])
    assert any(not torch.equal(teacher["weights"][k], ckpt["network_weights"][k]) for k in teacher["weights"])
    if trainer == FIXMATCH:
        assert "FixMatch: pseudo-labels from the teacher, threshold 0.95" in proc.stdout, tail(proc)
        # the share of strong-view pixels whose pseudo-label reached the threshold; the loss counts only those
        assert all(0 <= r <= 1 for r in log["mask_ratio"]) and any(r > 0 for r in log["mask_ratio"])
        assert all(v >= 0 for v in log["pseudo_label_loss"])
    else:
        assert all(0 <= v <= 2 for v in log["consistency_loss"])
    # per-epoch mean of the decays used: steps 1..3, then 4..6, ...
    assert log["ema_decay"] == pytest.approx([np.mean([ema_decay_at(s, EMA) for s in
                                                       range(1 + ITERATIONS * e, 1 + ITERATIONS * (e + 1))])
                                              for e in range(EPOCHS)])
    if trainer == SPCON_MT:
        assert {"projector_state", "spcon_state"} <= set(ckpt)
        assert log["gamma"] == [gamma_at(e, EPOCHS, 2.0, 50.0, 0.5) for e in range(EPOCHS)]
        assert all(0 <= w <= 1 for w in log["mean_positive_weight"])
        assert (folder / "self_paced_weights" / f"epoch_{HEATMAP_EVERY:04d}.png").is_file()
        # the unweighted L_con of the same batches (every weight 1 >= w_ij) is never below L_sp
        assert all(0 < u and w <= u + 1e-6 for w, u in zip(log["contrastive_loss"], log["unweighted_loss_train"]))
        assert all(0 < u for u in log["unweighted_loss_val"])


def test_student_and_exported_teacher_predict(tiny_dataset: TinyDataset, runs, results: Path,
                                              tmp_path: Path) -> None:
    for trainer in (MT, SPCON_MT, ENTMIN):
        _predict(tiny_dataset, results, trainer, tmp_path / f"student_{trainer}")

    _, folder = runs[SPCON_MT]
    proc = check(run([command("spcl_nnunet"), "export-teacher", folder / "checkpoint_final.pth"],
                     tiny_dataset.env(results)))
    exported = folder / "checkpoint_final_teacher.pth"
    assert f"-chk {exported.name}" in proc.stdout
    source, copy = load_checkpoint(folder / "checkpoint_final.pth"), load_checkpoint(exported)
    for key, value in source["teacher_state"]["weights"].items():
        assert torch.equal(copy["network_weights"][key], value), key
    assert copy["exported_network"] == "teacher"
    _predict(tiny_dataset, results, SPCON_MT, tmp_path / "teacher", "-chk", exported.name)

    again = run([command("spcl_nnunet"), "export-teacher", folder / "checkpoint_final.pth"], tiny_dataset.env(results))
    assert again.returncode == 2 and "--overwrite" in again.stdout
    _, entmin_folder = runs[ENTMIN]
    refused = run([command("spcl_nnunet"), "export-teacher", entmin_folder / "checkpoint_final.pth"],
                  tiny_dataset.env(results))
    assert refused.returncode == 2 and "teacher_state" in refused.stdout and ENTMIN in refused.stdout
    assert not (entmin_folder / "checkpoint_final_teacher.pth").exists()


# ------------------------------------------------------------------------------------ FixMatch's pseudo-labels
def test_fixmatch_pseudo_labels_come_from_the_named_network(tiny_dataset: TinyDataset, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The weak view's probabilities are the EMA teacher's (FixMatchTrainer) or the student's own
    (FixMatchTrainer_student), without gradient; another source is refused by name."""
    set_nnunet_env(monkeypatch, nnunet_env(tiny_dataset.raw, tiny_dataset.pre, tmp_path / "results"))
    monkeypatch.setenv(ENV_VAR, "smoke")
    torch.manual_seed(0)
    x = None
    for name, source in ((FIXMATCH, "teacher"), ("FixMatchTrainer_student", "student")):
        trainer = in_process_trainer(name)
        trainer.initialize()
        student = trainer.unwrapped_network()
        with torch.no_grad():                      # the teacher a different network from the student
            for p in trainer.teacher.module.parameters():
                p.add_(0.05 * torch.randn_like(p))
        if x is None:
            x = torch.randn(2, 1, *trainer.configuration_manager.patch_size)
        probabilities = trainer.weak_view_probabilities(x)
        assert not probabilities.requires_grad
        with torch.no_grad():
            own = torch.softmax(student(x)[0].float(), 1)
            teacher = torch.softmax(trainer.teacher.predict(x).float(), 1)
        assert not torch.allclose(own, teacher, atol=1e-4)
        assert torch.allclose(probabilities, teacher if source == "teacher" else own, atol=1e-6), name
    trainer.pseudo_label_source = "oracle"
    with pytest.raises(ValueError, match="pseudo_label_source must be one of .*'oracle'"):
        trainer.initialize()


# ------------------------------------------------------------------------------------ the unlabeled pool
def test_unlabeled_pool_excludes_validation_and_test(tiny_dataset: TinyDataset, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pre = tmp_path / "preprocessed"
    shutil.copytree(tiny_dataset.pre_dataset, pre / tiny_dataset.name)
    folds = json.loads((pre / tiny_dataset.name / "spcl_folds.json").read_text())
    labeled = set(folds["folds"][0]["labeled"])
    label_less = sorted(set(folds["train_pool"]) - labeled)[:2]
    meta_file = pre / tiny_dataset.name / "meta_labels.json"
    meta = json.loads(meta_file.read_text())
    meta["unlabeled"] = label_less
    meta_file.write_text(json.dumps(meta))
    empty_raw = tmp_path / "raw"
    empty_raw.mkdir()
    set_nnunet_env(monkeypatch, nnunet_env(empty_raw, pre, tmp_path / "results"))
    monkeypatch.setenv(ENV_VAR, "smoke")

    for trainer_name in (MT, SPCON_MT, ENTMIN):
        trainer = in_process_trainer(trainer_name)
        trainer.initialize()
        tr_keys, val_keys = trainer.do_split()
        pool, _ = trainer.training_pool()
        test_cases = {p.name[: -len("_0000.nii.gz")] for p in (tiny_dataset.raw_dataset / "imagesTs").glob("*_0000.nii.gz")}
        assert test_cases and val_keys
        assert not set(pool) & set(val_keys)
        assert not set(pool) & test_cases
        assert set(label_less) <= set(pool) and labeled <= set(pool)
        assert sorted(pool) == sorted(folds["train_pool"])
        assert not set(tr_keys) & set(label_less)                # placeholders never supervise
        loader = trainer.unlabeled_loader(pool)
        assert sorted(loader._data.identifiers) == sorted(pool)


# ------------------------------------------------------------------------------------ resume
def crash_after_epoch_1_and_load(tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 name: str, base: str, **attributes) -> tuple[dict, Path, dict, object]:
    """Train ``name`` (a crash-once subclass of ``base``) until its crash after epoch 1; return the
    environment, its fold folder, the saved checkpoint_latest.pth (a copy: nnU-Net deletes the file at
    the end) and the trainer nnU-Net builds and restores from it in this process."""
    trainer_dir = tmp_path / "extra_trainers"
    write_crash_once_trainer(trainer_dir, name, "spcl_nnunet.training.semisupervised", base, **attributes)
    marker, results = tmp_path / "crashed", tmp_path / "results"
    env = nnunet_env(tiny_dataset.raw, tiny_dataset.pre, results, extra_trainer_dirs=[trainer_dir],
                     SPCL_TEST_CRASH_MARKER=str(marker))
    folder = fold_dir(results, tiny_dataset.name, name)
    proc = run(train_command(TINY_ID, 0, name), env)
    assert proc.returncode == 3 and marker.exists(), tail(proc)
    saved_copy = tmp_path / "checkpoint_latest_copy.pth"
    shutil.copyfile(folder / "checkpoint_latest.pth", saved_copy)
    saved = load_checkpoint(saved_copy)
    assert saved["current_epoch"] == 2 and saved["teacher_state"]["steps"] == 4
    set_nnunet_env(monkeypatch, env)
    trainer = in_process_trainer(name)
    trainer.load_checkpoint(str(saved_copy))
    return env, folder, saved, trainer


def resume_to_the_end(env: dict, folder: Path, name: str) -> dict:
    """``--c`` from the saved epoch 2 to the end (epoch 2 only, the teacher restored after its 4 EMA
    steps and stepped twice more); returns checkpoint_final.pth."""
    proc = check(run(train_command(TINY_ID, 0, name, "--c"), env))
    assert epochs_in(proc.stdout) == [2], tail(proc)
    assert "teacher restored after 4 EMA steps" in proc.stdout
    final = load_checkpoint(folder / "checkpoint_final.pth")
    assert final["teacher_state"]["steps"] == 6
    return final


def test_resume_restores_teacher_and_gamma(tiny_dataset: TinyDataset, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    name = "CrashOnceSPConMTTrainer"
    env, folder, saved, trainer = crash_after_epoch_1_and_load(
        tiny_dataset, tmp_path, monkeypatch, name, "SPConMeanTeacherTrainer",
        num_epochs_default=3, iterations_per_epoch=2, val_iterations_per_epoch=2, checkpoint_every=1,
        final_validation=False, unlabeled_batch_size=2, num_scans_per_batch=2, rampup_epochs=2, heatmap_every=0,
        progress_plot_every=2)
    # nnU-Net's construction + load_checkpoint restore teacher, EMA step count, gamma and projector exactly
    assert trainer.teacher.steps == 4 and trainer.teacher.last_decay == saved["teacher_state"]["last_decay"]
    assert trainer.current_gamma == saved["spcon_state"]["gamma"] == gamma_at(1, 3, 2.0, 50.0, 0.5)
    teacher = trainer.teacher.module.state_dict()
    for key, value in saved["teacher_state"]["weights"].items():
        assert torch.equal(teacher[key], value), key
    for key, value in saved["projector_state"].items():
        assert torch.equal(trainer.projector.state_dict()[key], value), key
    assert trainer.teacher.module.decoder.deep_supervision is False
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in trainer.projector.parameters()} <= optimised
    assert not {id(p) for p in trainer.teacher.module.parameters()} & optimised

    final = resume_to_the_end(env, folder, name)
    assert final["spcon_state"]["gamma"] == gamma_at(2, 3, 2.0, 50.0, 0.5)
    log = final["logging"]
    assert all(len(v) == 3 for v in log.values()), {k: len(v) for k, v in log.items()}
    assert log["consistency_loss"][:2] == saved["logging"]["consistency_loss"]


def test_fixmatch_resume_restores_its_teacher_bit_exact(tiny_dataset: TinyDataset, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """FixMatch-style training stopped after epoch 1 and resumed with --c: nnU-Net's load_checkpoint
    brings back the EMA teacher that labels the weak views, weights and step count, bit for bit."""
    name = "CrashOnceFixMatchTrainer"
    env, folder, saved, trainer = crash_after_epoch_1_and_load(
        tiny_dataset, tmp_path, monkeypatch, name, FIXMATCH,
        num_epochs_default=3, iterations_per_epoch=2, val_iterations_per_epoch=1, checkpoint_every=1,
        final_validation=False, unlabeled_batch_size=2, rampup_epochs=2, progress_plot_every=2, ema_decay=0.9,
        confidence_threshold=0.5)
    assert trainer.teacher.steps == 4 and trainer.teacher.last_decay == saved["teacher_state"]["last_decay"]
    teacher = trainer.teacher.module.state_dict()
    assert set(teacher) == set(saved["teacher_state"]["weights"])
    for key, value in saved["teacher_state"]["weights"].items():
        assert torch.equal(teacher[key], value), key
    assert any(not torch.equal(teacher[k], saved["network_weights"][k]) for k in teacher)   # not the student
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not {id(p) for p in trainer.teacher.module.parameters()} & optimised

    final = resume_to_the_end(env, folder, name)
    log = final["logging"]
    assert all(len(v) == 3 for v in log.values()), {k: len(v) for k, v in log.items()}
    assert log["pseudo_label_loss"][:2] == saved["logging"]["pseudo_label_loss"]
    assert log["mask_ratio"][:2] == saved["logging"]["mask_ratio"]
