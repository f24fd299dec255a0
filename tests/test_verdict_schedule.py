"""benchmarks/schedules/acdc_transfer.json, the schedule of issue #19's verdict on the test scans
(benchmarks/README.md, "Verdict stage"), kept so that a later method can be set against the same runs.
Checked against the lengths the documentation states, written out by hand (no nnU-Net). Its
description stays as committed: an experiment folder records the whole schedule, so an edit would
stop the verdict's folder from resuming."""

from __future__ import annotations

from pathlib import Path

from spcl_nnunet.training.schedules import load_schedule

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "schedules" / "acdc_transfer.json"


def test_verdict_schedule_has_the_documented_lengths_and_the_default_recipes() -> None:
    schedule = load_schedule(str(PATH))
    assert schedule.name == "acdc_transfer"
    pretrain, finetune = schedule.pretrain, schedule.finetune
    # pre-training: 24 x 25 = 600 iterations of 4 scans x 3 slices x 2 views
    assert (pretrain["num_epochs_default"], pretrain["iterations_per_epoch"], pretrain["num_scans_per_batch"]) \
        == (24, 25, 4)
    # fine-tuning: 20 x 20 = 400 iterations at batch 8, RAdam warm-up over 2 epochs from 1e-4 to 1e-3
    assert (finetune["num_epochs_default"], finetune["iterations_per_epoch"], finetune["batch_size_override"]) \
        == (20, 20, 8)
    assert (finetune["warmup_epochs"], finetune["lr_init"], finetune["lr_init"] * finetune["lr_multiplier"]) \
        == (2, 1e-4, 1e-3)
    # no recipe pinned: each trainer runs its default (SP-Con's encoder at a tenth of the decoder's rate)
    for group in (pretrain, finetune, schedule.semisupervised):
        assert "encoder_lr_factor" not in group and "optimizer_name" not in group
        assert "frozen_encoder_epochs" not in group and "random_encoder_stages" not in group
    # nnU-Net's final validation stays on (not switched off); a checkpoint after every epoch (resumable)
    assert finetune.get("final_validation", True) is True
    assert pretrain["checkpoint_every"] == finetune["checkpoint_every"] == 1
