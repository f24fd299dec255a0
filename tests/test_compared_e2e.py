"""End-to-end runs of the compared methods through nnU-Net's own commands (tiny dataset, CPU,
the ``smoke`` schedule, 4 epochs x 3 iterations, without nnU-Net's final validation: the trainers are
scored on the test scans through ``nnUNetv2_predict`` instead).

Each trainer with extra state is stopped once after epoch 1, as a crash would stop it, and
resumed with ``--c``: its extra state (discriminator and its optimizer, cluster heads, dense
projector) is restored bit-exact, and the resumed run finishes (MixUp, which has none, trains in
one go). The global + local chain runs end to end:
``ContrastivePretrainTrainer`` -> ``LocalContrastivePretrainTrainer -pretrained_weights`` ->
``SPConFinetuneTrainer -pretrained_weights``; the segmentation trainers then predict the test
images with ``nnUNetv2_predict`` and are scored with nnU-Net's evaluation (``compute_metrics_on_folder2``,
what ``nnUNetv2_evaluate_folder`` runs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_helpers import (TINY_ID, TinyDataset, check, command, epochs_in, fold_dir, in_process_trainer,
                            load_checkpoint, nnunet_env, png_size, progress_png_size, run, seeded_commands,
                            set_nnunet_env, smoke_schedule_file, tail, train_command, write_crash_once_trainer)

pytestmark = pytest.mark.e2e

EPOCHS, ITERATIONS = 4, 3          # the smoke schedule
GLOBAL, LOCAL, FINETUNE = "ContrastivePretrainTrainer", "LocalContrastivePretrainTrainer", "SPConFinetuneTrainer"
MODULES = {"MixUpTrainer": "spcl_nnunet.training.compared", "AdversarialTrainer": "spcl_nnunet.training.compared",
           "DiscreteMITrainer": "spcl_nnunet.training.compared", LOCAL: "spcl_nnunet.training.local_contrastive"}
SEGMENTERS = ("MixUpTrainer", "AdversarialTrainer", "DiscreteMITrainer")
EXTRA_STATE = {"MixUpTrainer": (), "AdversarialTrainer": ("discriminator_state", "discriminator_optimizer_state"),
               "DiscreteMITrainer": ("cluster_heads_state",), LOCAL: ("dense_projector_state",)}
LOG_KEYS = {"MixUpTrainer": {"supervised_loss", "mixup_loss", "mixup_lambda", "rampup_weight"},
            "AdversarialTrainer": {"supervised_loss", "adversarial_loss", "discriminator_loss",
                                   "discriminator_accuracy", "rampup_weight"},
            "DiscreteMITrainer": {"supervised_loss", "mi_loss", "mi_encoder", "mi_half", "mi_full", "mi_consistency",
                                  "rampup_weight"},
            LOCAL: set()}
# panels below nnU-Net's three plots in progress.png: MixUp (supervised | mixup loss), (ramp-up | lambda);
# adversarial (supervised | adversarial loss), (D loss | D accuracy), (ramp-up); discrete MI (supervised |
# MI loss), (the three MI terms | consistency), (ramp-up); the local stage none (nnU-Net's three only)
PANELS = {"MixUpTrainer": 2, "AdversarialTrainer": 3, "DiscreteMITrainer": 3, LOCAL: 0}


def crash_name(trainer: str) -> str:
    return f"CrashOnce{trainer}"


def assert_same(a, b, where: str) -> None:
    """Bit-exact equality of nested state (tensors, numbers, lists, dicts)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b.to(a.device)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def live_extra_state(trainer) -> dict:
    if hasattr(trainer, "discriminator"):
        return {"discriminator_state": trainer.discriminator.state_dict(),
                "discriminator_optimizer_state": trainer.discriminator_optimizer.state_dict()}
    if hasattr(trainer, "cluster_heads"):
        return {"cluster_heads_state": trainer.cluster_heads.state_dict()}
    if hasattr(trainer, "dense_projector"):
        return {"dense_projector_state": trainer.dense_projector.state_dict()}
    return {}


# the segmenters train from lr_init 3e-3 (peak 3e-2) instead of the smoke schedule's 1e-4, at the smoke
# length (no added time): at 1e-4 their supervised loss falls by 3 % at most in its 12 steps (6 runs),
# at 3e-3 it falls by 23 % to 29 % (9 runs: 3 trainers x 3 initialisations; with learning rate 0: -3 % to
# +3 %). Their test Dice does not separate from an untrained network's at this length (0.02 to 0.13 vs
# 0.006 to 0.036): a Dice floor would need ~4x the iterations, ~15 s more a training
SEGMENTER_LR_INIT = 3e-3
LOSS_FALL = 0.10          # the supervised loss of the last epoch at most 90 % of the first epoch's
# the fine-tuning of the global + local chain learns from a raised learning rate, as the fine-tuning of
# test_trainers_e2e.py does: 16 iterations an epoch from lr_init 2e-3 (~6.5 s more CPU time), from seeded
# generators (seeded_commands). Its test Dice (foreground mean) must reach the floor:
# measured 0.227 to 0.366 (4 random initialisations); untrained (learning rate 0) 0.013 to 0.028, under the
# plain smoke schedule 0.016 to 0.027
CHAIN_LEARNING = {"iterations_per_epoch": 16, "lr_init": 2e-3}
CHAIN_DICE_FLOOR = 0.10
INIT_SEED = 0
# the weights of the unlabeled terms in the loss (the trainers' defaults, the papers' values): MixUp 0.01,
# adversarial 0.1, discrete MI: the weighted -MI terms are logged as mi_loss, the consistency term has weight 0
TERM_WEIGHTS = {"MixUpTrainer": ("mixup_loss", 0.01), "AdversarialTrainer": ("adversarial_loss", 0.1),
                "DiscreteMITrainer": ("mi_loss", 1.0)}


@pytest.fixture(scope="module")
def chain(tiny_dataset: TinyDataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The global stage (plain L_con pre-training), trained once."""
    results = tmp_path_factory.mktemp("results_compared")
    schedule = smoke_schedule_file(results / "smoke_without_final_validation.json", final_validation=False,
                                   lr_init=SEGMENTER_LR_INIT)
    learning = smoke_schedule_file(results / "smoke_learning_without_final_validation.json", final_validation=False,
                                   **CHAIN_LEARNING)
    env = {**tiny_dataset.env(results), "SPCL_SCHEDULE": str(schedule)}
    check(run(train_command(TINY_ID, 0, GLOBAL), env))
    return {"results": results, "global": fold_dir(results, tiny_dataset.name, GLOBAL) / "checkpoint_final.pth",
            "schedule": {"SPCL_SCHEDULE": str(schedule)}, "learning": {"SPCL_SCHEDULE": str(learning)}}


def assert_loss_is_the_sum_of_its_terms(trainer: str, log: dict) -> None:
    """Each epoch's training loss is its supervised loss plus the method's term at its weight and the epoch's
    ramp-up (means over the epoch's steps: the ramp-up is constant within an epoch)."""
    key, weight = TERM_WEIGHTS[trainer]
    expected = [s + weight * r * t for s, r, t in zip(log["supervised_loss"], log["rampup_weight"], log[key])]
    assert log["train_losses"] == pytest.approx(expected, rel=1e-5), (trainer, log["train_losses"], expected)


@pytest.fixture(scope="module")
def trained(tiny_dataset: TinyDataset, chain: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every compared trainer, stopped after epoch 1 and resumed with --c; what the test checks
    of the restore is recorded here (in-process nnU-Net construction + load_checkpoint)."""
    root = tmp_path_factory.mktemp("compared_resume")
    trainer_dir = root / "extra_trainers"
    for trainer, module in MODULES.items():
        write_crash_once_trainer(trainer_dir, crash_name(trainer), module, trainer)
    out = {"env": {**nnunet_env(tiny_dataset.raw, tiny_dataset.pre, chain["results"],
                                extra_trainer_dirs=[trainer_dir]), **chain["schedule"]}}
    for trainer in MODULES:
        if not EXTRA_STATE[trainer]:        # nothing of its own to restore: one plain run
            proc = check(run(train_command(TINY_ID, 0, trainer), out["env"]))
            folder = fold_dir(chain["results"], tiny_dataset.name, trainer)
            out[trainer] = {"first": proc, "folder": folder, "name": trainer,
                            "final": load_checkpoint(folder / "checkpoint_final.pth")}
            continue
        name, marker = crash_name(trainer), root / f"crashed_{trainer}"
        env = {**nnunet_env(tiny_dataset.raw, tiny_dataset.pre, chain["results"], extra_trainer_dirs=[trainer_dir],
                            SPCL_TEST_CRASH_MARKER=str(marker)), **chain["schedule"]}
        folder = fold_dir(chain["results"], tiny_dataset.name, name)
        extra = ("-pretrained_weights", str(chain["global"])) if trainer == LOCAL else ()
        first = run(train_command(TINY_ID, 0, name, *extra), env)
        assert first.returncode == 3 and marker.exists(), tail(first)
        saved_copy = root / f"{trainer}_latest.pth"
        shutil.copyfile(folder / "checkpoint_latest.pth", saved_copy)
        with pytest.MonkeyPatch.context() as monkeypatch:
            set_nnunet_env(monkeypatch, env)
            monkeypatch.setenv("SPCL_SCHEDULE", chain["schedule"]["SPCL_SCHEDULE"])
            restored = in_process_trainer(name)
            restored.load_checkpoint(str(saved_copy))
            live = live_extra_state(restored)
            optimised = {id(p) for group in restored.optimizer.param_groups for p in group["params"]}
            heads = [m for m in (getattr(restored, "cluster_heads", None), getattr(restored, "dense_projector", None))
                     if m is not None]
            heads_optimised = all(id(p) in optimised for m in heads for p in m.parameters())
        resumed = check(run(train_command(TINY_ID, 0, name, "--c"), env))
        out[trainer] = {"first": first, "resumed": resumed, "saved": load_checkpoint(saved_copy), "live": live,
                        "heads_optimised": heads_optimised, "folder": folder, "name": name,
                        "final": load_checkpoint(folder / "checkpoint_final.pth")}
    return out


@pytest.mark.parametrize("trainer", [t for t in MODULES if EXTRA_STATE[t]])
def test_resume_restores_the_extra_state_bit_exact(trained: dict, trainer: str) -> None:
    info = trained[trainer]
    assert epochs_in(info["first"].stdout) == [0, 1], tail(info["first"])
    assert epochs_in(info["resumed"].stdout) == [2, 3], tail(info["resumed"])
    saved = info["saved"]
    assert saved["current_epoch"] == 2 and saved["trainer_name"] == info["name"]
    assert set(EXTRA_STATE[trainer]) <= set(saved)
    assert set(info["live"]) == set(EXTRA_STATE[trainer])
    for key in EXTRA_STATE[trainer]:
        assert_same(saved[key], info["live"][key], key)
    assert info["heads_optimised"]             # the heads are in the restored optimizer
    final = info["final"]
    assert final["current_epoch"] == EPOCHS
    log = final["logging"]
    assert all(len(v) == EPOCHS for v in log.values()), {k: len(v) for k, v in log.items()}
    for key in LOG_KEYS[trainer] | {"train_losses", "val_losses"}:
        assert all(np.isfinite(v) for v in log[key]), (key, log[key])
        assert log[key][:2] == saved["logging"][key], key       # the first two epochs are the saved ones
    assert png_size(info["folder"] / "progress.png") == progress_png_size(PANELS[trainer])


def test_adversarial_discriminator_learns_every_step(trained: dict) -> None:
    final = trained["AdversarialTrainer"]["final"]
    state = final["discriminator_optimizer_state"]["state"]
    steps = {float(s["step"]) for s in state.values()}
    assert steps == {float(EPOCHS * ITERATIONS)}       # one Adam step per training iteration, resume included
    log = final["logging"]
    # D's loss (a float mean of 3 steps' BCEs) differs between epochs: a D whose output is constant (dead,
    # or never updated) or a value logged once and repeated gives the same number every epoch
    assert len(set(log["discriminator_loss"])) > 1, log["discriminator_loss"]
    # D's accuracy is exactly 0.5 at every step when D cannot tell the two sets apart at all: the same
    # inputs as "real" and "fake" (then D(real) = D(fake): real > 0 and fake < 0 are complementary) or
    # a constant D. Measured (8 runs x 4 epochs): 0.454 to 0.611, exactly 0.5 in 3 of the 32 epochs
    assert all(0 <= a <= 1 for a in log["discriminator_accuracy"])
    assert any(a != 0.5 for a in log["discriminator_accuracy"]), log["discriminator_accuracy"]
    assert_loss_is_the_sum_of_its_terms("AdversarialTrainer", log)
    assert "patch discriminator with" in trained["AdversarialTrainer"]["first"].stdout
    assert "unlabeled pool:" in trained["AdversarialTrainer"]["first"].stdout


def test_mixup_uses_labeled_pairs_only(trained: dict) -> None:
    info = trained["MixUpTrainer"]
    assert epochs_in(info["first"].stdout) == list(range(EPOCHS)), tail(info["first"])
    assert "the unlabeled images are not used" in info["first"].stdout
    assert "unlabeled pool:" not in info["first"].stdout
    log = info["final"]["logging"]
    assert all(len(v) == EPOCHS for v in log.values()), {k: len(v) for k, v in log.items()}
    for key in LOG_KEYS["MixUpTrainer"] | {"train_losses", "val_losses"}:
        assert all(np.isfinite(v) for v in log[key]), (key, log[key])
    # lambda ~ Beta(1, 1), one draw a step, logged as each epoch's mean of 3 draws: inside the open
    # interval (0, 1) (0 or 1 is no mixing) and a new value every epoch (continuous draws coincide with
    # probability 0): a fixed lambda (no mixing at 1, or 0.5) fails
    lambdas = log["mixup_lambda"]
    assert all(0 < lam < 1 for lam in lambdas) and len(set(lambdas)) == EPOCHS, lambdas
    assert all(v > 0 for v in log["mixup_loss"])
    assert png_size(info["folder"] / "progress.png") == progress_png_size(PANELS["MixUpTrainer"])
    assert_loss_is_the_sum_of_its_terms("MixUpTrainer", log)


def test_discrete_mi_terms(trained: dict) -> None:
    log = trained["DiscreteMITrainer"]["final"]["logging"]
    k = np.log(20)
    for key in ("mi_encoder", "mi_half", "mi_full"):
        assert all(-k - 1e-4 <= v <= 1e-6 for v in log[key]), (key, log[key])    # -MI lies in [-log K, 0]
    assert "cluster_heads_state" in trained["DiscreteMITrainer"]["final"]
    assert_loss_is_the_sum_of_its_terms("DiscreteMITrainer", log)


def test_local_stage_trains_the_decoder_up_to_half_resolution_only(trained: dict, chain: dict) -> None:
    info = trained[LOCAL]
    assert "Loading pretrained weights from file" in info["first"].stdout
    start, final = load_checkpoint(chain["global"])["network_weights"], info["final"]["network_weights"]
    stages = sorted({int(k.split(".")[2]) for k in final if k.startswith("decoder.stages.")})
    changed = {k for k in final if not torch.equal(final[k], start[k])}
    assert not {k for k in changed if k.startswith("encoder.")}                      # frozen
    assert not {k for k in changed if k.startswith(f"decoder.stages.{stages[-1]}.")
                or k.startswith(f"decoder.transpconvs.{stages[-1]}.")}               # never trained
    # -pretrained_weights does not load seg_layers (nnU-Net skips them): they keep their initialisation,
    # the same at the stop after epoch 1 and at the end
    mid = info["saved"]["network_weights"]
    seg = [k for k in final if ".seg_layers." in k]
    assert seg and all(torch.equal(final[k], mid[k]) for k in seg)
    assert any(not torch.equal(final[k], mid[k]) for k in final if k.startswith(f"decoder.stages.{stages[-2]}."))
    assert {k for k in changed if k.startswith(f"decoder.stages.{stages[-2]}.")}     # the 1/2-resolution block
    assert "Pre-training has no segmentation head" in info["resumed"].stdout


def _predict_and_evaluate(tiny_dataset: TinyDataset, env: dict, results: Path, trainer: str, out: Path) -> dict:
    images = tiny_dataset.raw_dataset / "imagesTs"
    check(run([command("nnUNetv2_predict"), "-i", images, "-o", out, "-d", str(TINY_ID), "-c", "2d", "-f", "0",
               "-tr", trainer, "-device", "cpu", "-npp", "0", "-nps", "0"], env))
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2

    compute_metrics_on_folder2(str(tiny_dataset.raw_dataset / "labelsTs"), str(out),
                               str(tiny_dataset.raw_dataset / "dataset.json"),
                               str(fold_dir(results, tiny_dataset.name, trainer).parent / "plans.json"),
                               num_processes=1)
    return json.loads((out / "summary.json").read_text())


def test_segmenters_and_the_global_local_chain_predict_and_evaluate(tiny_dataset: TinyDataset, trained: dict,
                                                                     chain: dict, tmp_path: Path) -> None:
    results, env = chain["results"], trained["env"]
    local_final = trained[LOCAL]["folder"] / "checkpoint_final.pth"
    with seeded_commands(INIT_SEED):
        proc = check(run(train_command(TINY_ID, 0, FINETUNE, "-pretrained_weights", str(local_final)),
                         {**env, **chain["learning"]}))
    assert "Loading pretrained weights from file" in proc.stdout and str(local_final) in proc.stdout
    for trainer in SEGMENTERS + (FINETUNE,):
        name = trained[trainer]["name"] if trainer in trained else trainer
        summary = _predict_and_evaluate(tiny_dataset, env, results, name, tmp_path / name)
        assert {"1", "2", "3"} <= set(summary["mean"]), trainer
        assert all(0 <= summary["mean"][c]["Dice"] <= 1 for c in ("1", "2", "3")), trainer
        if trainer == FINETUNE:
            # the chain's model learned from its labeled scan (CHAIN_DICE_FLOOR's measurements)
            assert summary["foreground_mean"]["Dice"] >= CHAIN_DICE_FLOOR, summary["mean"]
            continue
        # each segmenter learned from its labeled scans: its supervised loss fell (SEGMENTER_LR_INIT's measurements)
        supervised = trained[trainer]["final"]["logging"]["supervised_loss"]
        assert supervised[-1] <= (1 - LOSS_FALL) * supervised[0], (trainer, supervised)
