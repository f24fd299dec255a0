"""Options of the transfer arms (issue #19) change what trains, checked on nnU-Net-built trainers
(frozen encoders through nnU-Net's own run_training):
``encoder_lr_factor`` gives the encoder its own learning rate, every epoch of the schedule;
``random_encoder_stages`` draws the shallow encoder stages again after nnU-Net's
``load_pretrained_weights`` and leaves every other loaded tensor bit-equal; ``frozen_encoder_epochs``
keeps the encoder bit-equal while frozen and restarts the warm-up; ``optimizer_name = "sgd"`` is
nnU-Net's SGD with nnU-Net 2.8's warm-up and poly decay."""

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
    # the smoke schedule by hand (lr_init 1e-4, x 10 -> peak 1e-3, warm-up 1 epoch, 4 epochs): epoch 0 lr_init;
    # epoch 1 the peak; then peak * (1 + cos(pi * (e - 1) / 3)) / 2: e = 2: 1e-3 * (1 + 0.5) / 2 = 7.5e-4,
    # e = 3: 1e-3 * (1 - 0.5) / 2 = 2.5e-4
    by_hand = [1e-4, 1e-3, 7.5e-4, 2.5e-4]
    assert trainer.num_epochs == len(by_hand)
    for epoch in range(trainer.num_epochs):
        trainer.lr_scheduler.step(epoch)
        assert trainer.lr_scheduler.lr_at(epoch) == pytest.approx(by_hand[epoch], rel=1e-12)
        assert others["lr"] == pytest.approx(by_hand[epoch], rel=1e-12)
        assert encoder["lr"] == pytest.approx(0.1 * by_hand[epoch], rel=1e-12)
    assert "encoder learning rate x 0.1 (encoder_lr_factor)" in Path(trainer.log_file).read_text()


@pytest.mark.parametrize("trainer_name, schedule, factor", [
    ("SPConFinetuneTrainer", "smoke", 0.1),                # the default transfer recipe (issue #19's arm (c))
    ("SPConFinetuneTrainer", "demo", 0.1),                 # a built-in schedule keeps the recipe's factor
    ("SPConFinetuneTrainer_paperRecipe", "smoke", None),   # the paper's recipe: one rate for every parameter
    ("SPConBaselineTrainer", "smoke", None),               # nothing transferred: one rate
    ("SPConBaselineTrainer", "quality", None),
    ("MeanTeacherTrainer", "smoke", None),                 # semi-supervised training starts from scratch
])
def test_default_recipe_trains_the_encoder_at_a_tenth(schedule_with, monkeypatch: pytest.MonkeyPatch,
                                                      trainer_name: str, schedule: str, factor: float | None) -> None:
    schedule_with()
    monkeypatch.setenv(ENV_VAR, schedule)
    trainer = in_process_trainer(trainer_name)
    trainer.initialize()
    groups = trainer.optimizer.param_groups
    network = trainer.unwrapped_network()
    if factor is None:
        assert len(groups) == 1
        assert {id(p) for p in network.parameters()} <= {id(p) for p in groups[0]["params"]}
        return
    others, encoder = groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in network.encoder.parameters()}
    trainer.lr_scheduler.step(1)
    assert encoder["lr"] == pytest.approx(factor * others["lr"]) and others["lr"] > 0


def test_bad_factor_refused(schedule_with) -> None:
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


def _encoder_state(trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.unwrapped_network().encoder.state_dict().items()}


def _train_and_record(trainer) -> list[dict]:
    """nnU-Net's own ``run_training``, with the encoder's and the decoder's weights, the encoder's
    frozen state and group 0's learning rate recorded at the end of every epoch."""
    states = []
    train_epoch_end = trainer.on_train_epoch_end

    def record(outputs):
        train_epoch_end(outputs)
        network = trainer.unwrapped_network()
        states.append({"encoder": _encoder_state(trainer), "frozen": trainer.encoder_is_frozen(),
                       "seg": network.decoder.seg_layers[-1].weight.detach().clone(),
                       "lr": trainer.optimizer.param_groups[0]["lr"]})
    trainer.on_train_epoch_end = record
    trainer.run_training()
    return states


@pytest.mark.parametrize("frozen_epochs", [2, -1])
def test_frozen_encoder_stays_bit_equal(schedule_with, frozen_epochs: int) -> None:
    import torch

    schedule_with(frozen_encoder_epochs=frozen_epochs)
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    start = _encoder_state(trainer)
    assert trainer.encoder_is_frozen()
    states = _train_and_record(trainer)
    assert len(states) == trainer.num_epochs == 4
    frozen = range(4) if frozen_epochs == -1 else range(frozen_epochs)
    for epoch, state in enumerate(states):
        same = all(torch.equal(state["encoder"][k], start[k]) for k in start)
        assert same == (epoch in frozen) and state["frozen"] == (epoch in frozen), epoch
    seg = [s["seg"] for s in states]
    assert all(not torch.equal(a, b) for a, b in zip(seg, seg[1:]))      # the decoder trains every epoch
    schedule = trainer.lr_scheduler
    if frozen_epochs == 2:       # a fresh warm-up when the encoder is released: the sawtooth
        assert schedule.restart_epoch == 2 and schedule.lr_at(2) == schedule.lr_at(0) == trainer.lr_init
        assert schedule.lr_at(1.99) < schedule.lr_at(1) and schedule.lr_at(3) > schedule.lr_at(2)
        # by hand: two 2-epoch stages, each warm-up 1 epoch (2 > warmup_epochs 1) from 1e-4 to the peak 1e-3,
        # whose cosine has reached 1e-3 * (1 + cos(0)) / 2 = 1e-3 at the stage's epoch 1
        by_hand = [1e-4, 1e-3, 1e-4, 1e-3]
    else:
        assert schedule.restart_epoch == 0
        by_hand = [1e-4, 1e-3, 7.5e-4, 2.5e-4]     # the smoke schedule (test_encoder_learning_rate_factor)
    assert [s["lr"] for s in states] == pytest.approx([schedule.lr_at(e) for e in range(4)])
    assert [s["lr"] for s in states] == pytest.approx(by_hand, rel=1e-12)
    log = Path(trainer.log_file).read_text()
    # no -pretrained_weights: nnU-Net's on_train_start warns that this is not the baseline
    assert "WARNING: SPConFinetuneTrainer runs without -pretrained_weights" in log
    assert f"encoder frozen from epoch 0 (frozen_encoder_epochs = {frozen_epochs})" in log
    assert ("encoder trained from epoch 2" in log) == (frozen_epochs == 2)


def test_nnunet_sgd_with_its_warmup_and_poly_decay(schedule_with) -> None:
    schedule_with(optimizer_name="sgd", encoder_lr_factor=0.5, warmup_epochs=1)
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    optimizer = trainer.optimizer
    assert isinstance(optimizer, __import__("torch").optim.SGD)
    others, encoder = optimizer.param_groups
    for group in (others, encoder):
        assert group["momentum"] == 0.99 and group["nesterov"] and group["weight_decay"] == 3e-5
    peak, epochs, warmup = 1e-2, trainer.num_epochs, 1
    for epoch in range(epochs):
        trainer.lr_scheduler.step(epoch)
        # nnU-Net 2.8's Lin_incr_LRScheduler, then PolyLRScheduler_offset (nnUNetTrainer_warmup)
        expected = peak / warmup * (1 + epoch) if epoch < warmup else \
            peak * (1 - (epoch - warmup) / (epochs - warmup)) ** 0.9
        assert others["lr"] == pytest.approx(expected) and encoder["lr"] == pytest.approx(0.5 * expected)


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer_name": "adam"}, "optimizer_name must be 'radam' or 'sgd', got 'adam'"),
    ({"frozen_encoder_epochs": -2}, "frozen_encoder_epochs must be a whole number of epochs >= 0, or -1"),
    ({"frozen_encoder_epochs": 4}, "frozen_encoder_epochs = 4 leaves none of the 4 epochs"),
    ({"frozen_encoder_epochs": 1, "optimizer_name": "sgd"}, "defined for the RAdam schedule only"),
])
def test_bad_transfer_options_refused(schedule_with, overrides: dict, message: str) -> None:
    schedule_with(**overrides)
    with pytest.raises(ValueError, match=message):
        in_process_trainer("SPConFinetuneTrainer").initialize()
