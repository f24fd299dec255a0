"""Every trainer's step under mixed precision, on the CPU.

On CUDA nnU-Net trains under autocast (float16); on the CPU it does not, so the e2e tests never see
float16 activations. Here each trainer, built as ``nnUNetv2_train`` builds it on the tiny dataset,
takes a training step with its ``autocast_context`` switched to CPU autocast (bfloat16): a layer fed
a low-precision activation inside a float32-only block, or a loss that is not computed in float32,
fails here as it would on a GPU (the GPU run found one: the discrete-MI consistency term).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_helpers import TinyDataset, in_process_trainer, set_nnunet_env

# the trainers with a float32 block of their own (SP-Con + Mean Teacher covers Mean Teacher's, the
# _image discriminator the plain one's; both discrete-MI variants: the consistency term with and
# without gradient); the plain nnU-Net step is nnU-Net's business
TRAINERS = ("SPConPretrainTrainer", "ContrastivePretrainTrainer", "SPConMeanTeacherTrainer", "MixUpTrainer",
            "AdversarialTrainer_image", "DiscreteMITrainer", "DiscreteMITrainer_consistency")


@pytest.mark.parametrize("name", TRAINERS)
def test_train_step_under_autocast(tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   name: str) -> None:
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    monkeypatch.setenv("SPCL_SCHEDULE", "smoke")
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")          # batches made in this process
    trainer = in_process_trainer(name)
    trainer.autocast_context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    trainer.on_train_start()
    try:
        # the last epoch: ramp-ups at full weight, gamma past its start (in epoch 0 every self-paced
        # weight is 0 and SP-Con's pre-training loss with it)
        trainer.current_epoch = trainer.num_epochs - 1
        trainer.on_train_epoch_start()
        before = [p.detach().clone() for p in trainer.network.parameters()]
        output = trainer.train_step(next(trainer.dataloader_train))
    finally:
        trainer.on_train_end()
    for key, value in output.items():
        assert np.all(np.isfinite(value)), (name, key, value)
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters())]
    assert any(changed), f"{name}: no network weight changed in a step"
