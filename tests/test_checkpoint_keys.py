"""``SPConTrainerBase.base_checkpoint`` copies the dict of nnU-Net's ``save_checkpoint`` (nnU-Net has no
hook to extend it): it must hold every key the installed nnU-Net writes, so that a key added upstream
is not silently dropped from our checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnunet_helpers import TinyDataset, in_process_trainer, set_nnunet_env


def test_base_checkpoint_holds_every_key_of_nnunets_save_checkpoint(tiny_dataset: TinyDataset, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    monkeypatch.delenv("SPCL_SCHEDULE", raising=False)
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    upstream_file = tmp_path / "upstream.pth"
    nnUNetTrainer.save_checkpoint(trainer, str(upstream_file))     # nnU-Net's own method, on the same trainer
    upstream = torch.load(upstream_file, map_location="cpu", weights_only=False)
    ours = trainer.base_checkpoint()

    assert upstream and set(upstream) <= set(ours), f"keys nnU-Net writes that base_checkpoint lacks: " \
                                                   f"{sorted(set(upstream) - set(ours))}"
    for key in ("current_epoch", "trainer_name", "init_args", "_best_ema", "inference_allowed_mirroring_axes"):
        assert ours[key] == upstream[key], key
    assert set(ours["network_weights"]) == set(upstream["network_weights"])
    for key, value in upstream["network_weights"].items():
        assert torch.equal(ours["network_weights"][key].cpu(), value), key

    # and what our save_checkpoint writes is that dict plus our own keys
    ours_file = tmp_path / "ours.pth"
    trainer.save_checkpoint(str(ours_file))
    assert set(upstream) <= set(torch.load(ours_file, map_location="cpu", weights_only=False))
