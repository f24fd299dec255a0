"""What the SP-Con projector reads (``projector_input``), set through a JSON schedule as a user would.

"bottleneck" (the default) feeds the projector the encoder's output; "last_conv" the last
convolution's output before its InstanceNorm + LeakyReLU (benchmarks/README.md, "diagnose_pooling.py"). Checked
in a real training step of the pre-training and of SP-Con + Mean Teacher: the tensor the projector
receives, against the encoder's output of the same step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nnunet_helpers import TinyDataset, in_process_trainer, set_nnunet_env
from spcl_nnunet.training.schedules import SCHEDULES


def smoke_schedule_with(tmp_path: Path, **overrides) -> Path:
    data = SCHEDULES["smoke"].to_json()
    data["name"] = "smoke_projector_input"
    for role in ("pretrain", "semisupervised"):
        data[role].update(overrides)
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(data))
    return path


def projector_and_encoder_inputs(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """(the projector's input, the encoder's last output) of one training step in the last epoch."""
    trainer.initialize()
    seen = {}        # the first projector call, with the encoder call just before it

    def at_projector(module, args):
        seen.setdefault("pair", (args[0].detach().clone(), seen["encoder"].detach().clone()))

    hooks = [trainer.network.encoder.register_forward_hook(lambda module, args, out: seen.update(encoder=out[-1])),
             trainer.projector.register_forward_pre_hook(at_projector)]
    trainer.on_train_start()
    try:
        trainer.current_epoch = trainer.num_epochs - 1
        trainer.on_train_epoch_start()
        trainer.train_step(next(trainer.dataloader_train))
    finally:
        trainer.on_train_end()
        for hook in hooks:
            hook.remove()
    return seen["pair"]


@pytest.mark.parametrize("name", ["SPConPretrainTrainer", "SPConMeanTeacherTrainer"])
@pytest.mark.parametrize("projector_input", ["bottleneck", "last_conv"])
def test_projector_reads_what_the_schedule_says(tiny_dataset: TinyDataset, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, name: str, projector_input: str) -> None:
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    monkeypatch.setenv("SPCL_SCHEDULE", str(smoke_schedule_with(tmp_path, projector_input=projector_input)))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = in_process_trainer(name)
    projector_in, encoder_out = projector_and_encoder_inputs(trainer)
    assert projector_in.shape == encoder_out.shape
    if projector_input == "bottleneck":
        assert torch.equal(projector_in, encoder_out)
    else:
        block = trainer.network.encoder.stages[-1][-1].convs[-1]
        assert not torch.allclose(projector_in, encoder_out)
        assert torch.allclose(block.nonlin(block.norm(projector_in.clone())), encoder_out, atol=1e-5)


def test_unknown_projector_input_stops_before_training(tiny_dataset: TinyDataset, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    monkeypatch.setenv("SPCL_SCHEDULE", str(smoke_schedule_with(tmp_path, projector_input="flatten")))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = in_process_trainer("SPConPretrainTrainer")
    with pytest.raises(ValueError, match="projector_input must be one of bottleneck, last_conv, got 'flatten'"):
        trainer.initialize()
