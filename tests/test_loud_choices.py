"""Choices the trainers once made silently are logged: a warm-up shortened because the run is short,
a meta-label batch that falls back to 1 scan, and ``SPConFinetuneTrainer`` without
``-pretrained_weights`` (a random encoder held back at a tenth of the rate, not the baseline).

The library pieces return the fact (no logger, no nnU-Net needed); the trainers built by nnU-Net on
the tiny dataset write it to their training log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_helpers import TinyDataset, in_process_trainer, set_nnunet_env
from spcl_nnunet.contrastive.pacing import effective_warmup, warmup_cosine_lr
from spcl_nnunet.contrastive.sampling import scans_per_meta_batch
from spcl_nnunet.training.schedules import ENV_VAR


# ------------------------------------------------------------------------------ library pieces
@pytest.mark.parametrize("max_epochs, warmup, expected", [
    (80, 10, 10),     # long enough: as asked
    (11, 10, 10),
    (10, 10, 2),      # not longer than the warm-up: max(1, 10 // 5)
    (4, 10, 1),       # max(1, 4 // 5)
    (1, 10, 0),       # no epoch left for the decay: no warm-up
    (5, 0, 0),
])
def test_effective_warmup(max_epochs: int, warmup: int, expected: int) -> None:
    assert effective_warmup(max_epochs, warmup) == expected


def test_warmup_cosine_lr_follows_the_effective_warmup() -> None:
    # 4 epochs with warmup_epochs 10: W = 1, so the peak 1e-2 is reached at epoch 1, not 10
    assert warmup_cosine_lr(1, 4, 1e-3, 10.0, warmup_epochs=10) == pytest.approx(1e-2)


def test_scheduler_notes_each_shortened_stage() -> None:
    import torch

    from spcl_nnunet.training.lr_schedule import WarmupCosineLRScheduler

    def notes(max_epochs: int, warmup: int, restart: int = 0) -> list[str]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return WarmupCosineLRScheduler(optimizer, 1e-3, 10.0, max_epochs, warmup, restart_epoch=restart).warmup_notes()

    assert notes(80, 10) == []
    assert notes(4, 10) == ["learning-rate warm-up of the run shortened from 10 to 1 epoch(s): the run has 4 "
                            "epoch(s), not more than warmup_epochs"]
    # frozen encoder for 2 of 20 epochs: only the first stage (2 epochs) is too short for a 3-epoch warm-up
    shortened = notes(20, 3, restart=2)
    assert len(shortened) == 1 and "the frozen-encoder stage shortened from 3 to 1 epoch(s)" in shortened[0]


def test_meta_label_batch_falls_back_to_one_scan_and_says_so() -> None:
    assert scans_per_meta_batch(12, 3) == (4, None)
    assert scans_per_meta_batch(3, 3) == (1, None)
    scans, note = scans_per_meta_batch(2, 3)
    assert scans == 1
    assert "batch size 2 is smaller than the 3 slice partitions" in note and "1 scan x 3 slices" in note
    assert "num_scans_per_batch" in note
    with pytest.raises(ValueError, match="got 0 and 3"):
        scans_per_meta_batch(0, 3)


# ------------------------------------------------------------------------------ in nnU-Net's trainers
@pytest.fixture
def schedule_file(tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """nnU-Net's folders of the tiny dataset; ``write(role=overrides)`` points SPCL_SCHEDULE at a schedule."""
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    monkeypatch.delenv(ENV_VAR, raising=False)

    def write(**roles: dict) -> None:
        path = tmp_path / "schedule.json"
        path.write_text(json.dumps({"name": "test", **roles}))
        monkeypatch.setenv(ENV_VAR, str(path))
    return write


def log_of(trainer, start: int = 0) -> str:
    """The trainer's training log from character ``start`` on (trainers built in the same second share
    nnU-Net's log file)."""
    path = Path(trainer.log_file)
    return path.read_text()[start:] if path.is_file() else ""


def test_trainer_logs_a_shortened_warmup(schedule_file) -> None:
    schedule_file(pretrain={"num_epochs_default": 3, "warmup_epochs": 10})
    trainer = in_process_trainer("SPConPretrainTrainer")
    start = len(log_of(trainer))
    trainer.initialize()
    assert "learning-rate warm-up of the run shortened from 10 to 1 epoch(s): the run has 3 epoch(s)" \
        in log_of(trainer, start)

    schedule_file(pretrain={"num_epochs_default": 30, "warmup_epochs": 10})
    trainer = in_process_trainer("SPConPretrainTrainer")
    start = len(log_of(trainer))
    trainer.initialize()
    assert "warm-up of the run shortened" not in log_of(trainer, start)


def test_trainer_logs_the_one_scan_fallback(schedule_file) -> None:
    schedule_file()
    trainer = in_process_trainer("SPConPretrainTrainer")
    trainer.load_spcon_sidecars()
    partitions = trainer.meta_labels.slice_partitions
    assert partitions >= 2
    trainer.batch_size_override = partitions - 1
    start = len(log_of(trainer))
    assert trainer.scans_per_rank() == 1
    assert f"the batch size {partitions - 1} is smaller than the {partitions} slice partitions" \
        in log_of(trainer, start)

    trainer.batch_size_override = 2 * partitions
    start = len(log_of(trainer))
    assert trainer.scans_per_rank() == 2
    assert log_of(trainer, start) == ""


def test_finetuning_without_pretrained_weights_warns_and_names_the_baseline(schedule_file, tmp_path: Path) -> None:
    import torch
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    trainer = in_process_trainer("SPConFinetuneTrainer")
    assert trainer.random_encoder_warning() is not None        # not built yet: nothing can have been loaded
    trainer.initialize()
    warning = trainer.random_encoder_warning()
    assert warning.startswith("WARNING: SPConFinetuneTrainer runs without -pretrained_weights")
    assert "0.1 x the learning rate" in warning and "run -tr SPConBaselineTrainer;" in warning

    other = in_process_trainer("SPConFinetuneTrainer")         # a different random network, as a checkpoint
    other.initialize()
    weights = tmp_path / "pretrained.pth"
    torch.save({"network_weights": other.unwrapped_network().state_dict()}, weights)
    load_pretrained_weights(trainer.network, str(weights), verbose=False)
    assert trainer.pretrained_weights_loaded() and trainer.random_encoder_warning() is None

    recipe = in_process_trainer("SPConFinetuneTrainer_nnUNetRecipe")
    recipe.initialize()
    assert "run -tr SPConBaselineTrainer_nnUNetRecipe;" in recipe.random_encoder_warning()
    for one_rate in ("SPConBaselineTrainer", "SPConFinetuneTrainer_paperRecipe", "MeanTeacherTrainer"):
        built = in_process_trainer(one_rate)
        built.initialize()
        assert built.random_encoder_warning() is None, one_rate   # one rate: from scratch is the baseline
