"""Options of the transfer arms (issue #19) change what trains, checked on nnU-Net-built trainers:
``encoder_lr_factor`` gives the encoder its own learning rate, every epoch of the schedule;
``random_encoder_stages`` draws the shallow encoder stages again after nnU-Net's
``load_pretrained_weights`` and leaves every other loaded tensor bit-equal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_helpers import TinyDataset, in_process_trainer, set_nnunet_env
from spcl_nnunet.training.schedules import ENV_VAR, SCHEDULES


@pytest.fixture
def schedule_with(tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point SPCL_SCHEDULE at the smoke schedule plus the given fine-tuning overrides."""
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))

    def write(**finetune) -> None:
        smoke = SCHEDULES["smoke"].to_json()
        path = tmp_path / f"schedule_{len(list(tmp_path.glob('schedule_*')))}.json"
        path.write_text(json.dumps({**smoke, "name": "arm", "finetune": {**smoke["finetune"], **finetune}}))
        monkeypatch.setenv(ENV_VAR, str(path))
    return write


def test_encoder_learning_rate_factor(schedule_with) -> None:
    schedule_with(encoder_lr_factor=0.1)
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    network = trainer.unwrapped_network()
    others, encoder = trainer.optimizer.param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in network.encoder.parameters()}
    assert {id(p) for p in others["params"]} == {id(p) for p in network.parameters()} - \
        {id(p) for p in network.encoder.parameters()}
    for epoch in range(trainer.num_epochs):
        trainer.lr_scheduler.step(epoch)
        assert others["lr"] == pytest.approx(trainer.lr_scheduler.lr_at(epoch))
        assert encoder["lr"] == pytest.approx(0.1 * trainer.lr_scheduler.lr_at(epoch))
    assert "encoder learning rate x 0.1 (encoder_lr_factor)" in Path(trainer.log_file).read_text()


def test_one_rate_by_default_and_bad_factor_refused(schedule_with) -> None:
    schedule_with()
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    (group,) = trainer.optimizer.param_groups
    assert len(group["params"]) == len(list(trainer.unwrapped_network().parameters()))
    schedule_with(encoder_lr_factor=0.0)
    with pytest.raises(ValueError, match="encoder_lr_factor must be > 0, got 0.0"):
        in_process_trainer("SPConFinetuneTrainer").initialize()


def test_heads_train_at_the_decoders_rate(schedule_with) -> None:
    schedule_with(encoder_lr_factor=0.5)
    trainer = in_process_trainer("SPConMeanTeacherTrainer")
    trainer.initialize()
    others, encoder = trainer.optimizer.param_groups
    heads = {id(p) for p in trainer.heads_parameters()}
    assert heads and heads <= {id(p) for p in others["params"]}
    assert not heads & {id(p) for p in encoder["params"]}


def test_random_shallow_encoder_stages_after_pretrained_weights(schedule_with, tmp_path: Path) -> None:
    import torch
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    schedule_with(random_encoder_stages=2)
    source = in_process_trainer("SPConFinetuneTrainer")
    source.initialize()
    weights = tmp_path / "pretrained.pth"
    torch.save({"network_weights": source.unwrapped_network().state_dict()}, weights)
    trainer = in_process_trainer("SPConFinetuneTrainer")
    assert trainer.encoder_stages_to_reinitialise() == 0            # not built yet: nnU-Net's init comes anyway
    trainer.initialize()
    load_pretrained_weights(trainer.network, str(weights), verbose=False)
    loaded = {k: v.clone() for k, v in trainer.unwrapped_network().state_dict().items()}
    assert trainer.encoder_stages_to_reinitialise() == 2
    trainer.reinitialise_encoder_stages(trainer.encoder_stages_to_reinitialise())
    now = trainer.unwrapped_network().state_dict()
    changed = {k for k in now if not torch.equal(now[k], loaded[k])}
    stages = ("encoder.stages.0.", "encoder.stages.1.")
    in_stages = [k for k in now if k.startswith(stages) or k.startswith(tuple(f"decoder.{p}" for p in stages))]
    shallow = [k for k in in_stages if k.endswith("conv.weight")]     # (the decoder holds the encoder too)
    assert shallow and set(shallow) <= changed                       # stages 0 and 1 drawn again
    assert changed <= set(in_stages), sorted(changed - set(in_stages))[:5]   # the rest as loaded
    trainer.current_epoch = 3                                        # a resumed run keeps its weights
    assert trainer.encoder_stages_to_reinitialise() == 0
    with pytest.raises(ValueError, match=rf"random_encoder_stages must lie in 0..{len(trainer.unwrapped_network().encoder.stages)} "):
        trainer.reinitialise_encoder_stages(9)
