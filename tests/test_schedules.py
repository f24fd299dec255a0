"""Training schedules (``SPCL_SCHEDULE``): the data, how trainers apply it, and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nnunet_helpers import TinyDataset, in_process_trainer, load_checkpoint, set_nnunet_env
from spcl_nnunet.training.schedules import ENV_VAR, ROLES, SCHEDULES, Schedule, active_schedule, load_schedule


# ------------------------------------------------------------------------------ the data (no nnU-Net)
def test_unknown_schedule_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as err:
        load_schedule("fastest")
    assert "unknown schedule 'fastest'" in str(err.value)
    for name in ("smoke", "demo", "quality", "gpu", "paper"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match=f"{ENV_VAR}=fastest: unknown schedule"):
        active_schedule({ENV_VAR: "fastest"})
    assert active_schedule({}) is None and active_schedule({ENV_VAR: ""}) is None


def test_every_experiment_schedule_checkpoints_every_epoch() -> None:
    for schedule in SCHEDULES.values():
        for role in ROLES:
            merged = {k: v for _, group in schedule.role_overrides(role) for k, v in group.items()}
            assert merged["checkpoint_every"] == 1, (schedule.name, role)


def test_semisupervised_role_applies_finetune_then_its_own() -> None:
    schedule = Schedule("s", "", finetune={"lr_init": 1.0}, semisupervised={"lr_init": 2.0, "rampup_epochs": 3})
    assert schedule.role_overrides("semisupervised") == [("finetune", {"lr_init": 1.0}),
                                                         ("semisupervised", {"lr_init": 2.0, "rampup_epochs": 3})]
    assert schedule.role_overrides("pretrain") == [("pretrain", {})]
    with pytest.raises(ValueError, match="unknown trainer role 'other'"):
        schedule.role_overrides("other")


def test_json_schedule_file(tmp_path: Path) -> None:
    data = {"name": "mine", "description": "d", "pretrain": {"num_epochs_default": 2}, "finetune": {"lr_init": 1e-3}}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    schedule = load_schedule(str(path))
    assert schedule == Schedule("mine", "d", pretrain={"num_epochs_default": 2}, finetune={"lr_init": 1e-3})
    assert active_schedule({ENV_VAR: str(path)}) == schedule
    assert Schedule.from_json(schedule.to_json(), "x") == schedule
    for bad, message in (({**data, "extra": 1}, "unknown key"), ({**data, "name": ""}, "\"name\""),
                         ({**data, "finetune": [1]}, "\"finetune\""),
                         ({**data, "finetune": {"lr_init": [1]}}, "\"finetune\".\"lr_init\"")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message) as err:
            load_schedule(str(path))
        assert str(path) in str(err.value)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_schedule(str(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_schedule(str(tmp_path / "missing.json"))


def test_built_in_descriptions_hold_no_measured_figures() -> None:
    """Measurements (times, machines, dates) live in benchmarks/README.md, not in the schedule table."""
    import re

    measured = re.compile(r"\b\d+(\.\d+)? ?(s|min|h|hours?|minutes?|seconds?)\b|H100|H200|A100|\b20\d\d-\d\d")
    for schedule in SCHEDULES.values():
        assert not measured.search(schedule.description), (schedule.name, schedule.description)


def test_schedules_module_imports_no_nnunet() -> None:
    import subprocess
    import sys

    code = "import sys, spcl_nnunet.training.schedules; print('nnunetv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------------ trainer classes
def test_schedule_overrides_per_trainer_class() -> None:
    from spcl_nnunet.experiment.methods import trainer_class
    from spcl_nnunet.training.schedules import schedule_overrides

    smoke = SCHEDULES["smoke"]
    applied, skipped = schedule_overrides(trainer_class("EntropyMinTrainer"), smoke)
    assert applied["unlabeled_batch_size"] == 2 and applied["num_epochs_default"] == 4
    assert sorted(skipped) == ["ema_decay", "heatmap_every", "num_scans_per_batch"]   # only other trainers have them
    applied, skipped = schedule_overrides(trainer_class("SPConMeanTeacherTrainer"), smoke)
    assert skipped == [] and applied["ema_decay"] == 0.99 and applied["num_scans_per_batch"] == 2
    applied, _ = schedule_overrides(trainer_class("SPConPretrainTrainer"), SCHEDULES["paper"])
    assert applied == {"num_scans_per_batch": 10, "checkpoint_every": 1}

    for group, key in (("finetune", "num_epoch_default"), ("finetune", "ema_decay"),
                       ("pretrain", "unlabeled_batch_size")):
        bad = Schedule("typo", "", **{group: {key: 3}})
        trainer = "SPConPretrainTrainer" if group == "pretrain" else "MeanTeacherTrainer"
        with pytest.raises(ValueError) as err:
            schedule_overrides(trainer_class(trainer), bad)
        assert f"schedule 'typo', role '{group}': unknown key '{key}'" in str(err.value)
    with pytest.raises(ValueError, match="iterations_per_epoch = 2.5 does not fit"):
        schedule_overrides(trainer_class("SPConFinetuneTrainer"),
                           Schedule("t", "", finetune={"iterations_per_epoch": 2.5}))
    applied, _ = schedule_overrides(trainer_class("SPConFinetuneTrainer"),
                                    Schedule("t", "", finetune={"iterations_per_epoch": 2.0, "lr_init": 1}))
    assert applied == {"iterations_per_epoch": 2, "lr_init": 1} and isinstance(applied["iterations_per_epoch"], int)


# ------------------------------------------------------------------------------ in nnU-Net's trainer
@pytest.fixture
def nnunet_env_set(tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path


def test_trainer_applies_the_schedule(nnunet_env_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "smoke")
    trainer = in_process_trainer("SPConFinetuneTrainer")
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch,
            trainer.save_every) == (4, 3, 1, 1)
    assert trainer.initial_lr == pytest.approx(1e-4 * 10.0) and trainer.warmup_epochs == 1
    assert trainer.batch_size_override == 2                  # nnU-Net sets batch_size in initialize()
    assert trainer.spcl_schedule == {"name": "smoke", "overrides": dict(SCHEDULES["smoke"].finetune)}
    log = Path(trainer.log_file).read_text()
    assert "schedule 'smoke' (SPCL_SCHEDULE), role 'finetune': num_epochs_default = 4" in log
    # the class is untouched: the overrides are instance attributes
    assert type(trainer).num_epochs_default == 80

    teacher = in_process_trainer("MeanTeacherTrainer")
    assert (teacher.ema_decay, teacher.unlabeled_batch_size, teacher.num_epochs) == (0.99, 2, 4)
    pretrainer = in_process_trainer("SPConPretrainTrainer")
    assert (pretrainer.num_scans_per_batch, pretrainer.num_epochs, pretrainer.initial_lr) == (2, 4, pytest.approx(1e-3))

    monkeypatch.delenv(ENV_VAR)
    plain = in_process_trainer("SPConFinetuneTrainer")
    assert plain.num_epochs == 80 and plain.spcl_schedule == {"name": None, "overrides": {}}


def test_bad_schedule_stops_the_trainer_at_start(nnunet_env_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = nnunet_env_set / "typo.json"
    path.write_text(json.dumps({"name": "typo", "finetune": {"num_epoch_default": 3}}))
    monkeypatch.setenv(ENV_VAR, str(path))
    with pytest.raises(ValueError, match="schedule 'typo', role 'finetune': unknown key 'num_epoch_default'"):
        in_process_trainer("SPConBaselineTrainer")
    monkeypatch.setenv(ENV_VAR, "nope")
    with pytest.raises(ValueError, match="unknown schedule 'nope': known schedules are smoke, demo"):
        in_process_trainer("SPConBaselineTrainer")
    path.write_text(json.dumps({"name": "never", "finetune": {"progress_plot_every": 0}}))
    monkeypatch.setenv(ENV_VAR, str(path))
    with pytest.raises(ValueError, match="progress_plot_every must be a whole number >= 1, got 0"):
        in_process_trainer("SPConBaselineTrainer")


def test_resuming_under_another_schedule_is_refused(nnunet_env_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "smoke")
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    assert trainer.batch_size == 2
    path = nnunet_env_set / "checkpoint_latest.pth"
    trainer.save_checkpoint(str(path))
    saved = load_checkpoint(path)
    assert saved["spcl_schedule"] == {"name": "smoke", "overrides": dict(SCHEDULES["smoke"].finetune)}

    same = in_process_trainer("SPConFinetuneTrainer")
    same.load_checkpoint(str(path))                          # same schedule: resumes
    for key, value in saved["network_weights"].items():
        assert torch.equal(same.network.state_dict()[key], value), key

    monkeypatch.setenv(ENV_VAR, "demo")
    other = in_process_trainer("SPConFinetuneTrainer")
    with pytest.raises(ValueError) as err:
        other.load_checkpoint(str(path))
    message = str(err.value)
    assert str(path) in message and "schedule 'smoke'" in message and "schedule 'demo'" in message
    assert not other.was_initialized                         # refused before anything was built

    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(ValueError, match=r"now runs under no schedule \(class defaults\)"):
        in_process_trainer("SPConFinetuneTrainer").load_checkpoint(str(path))

    edited = nnunet_env_set / "edited.json"                  # same name, other values
    edited.write_text(json.dumps({**SCHEDULES["smoke"].to_json(), "finetune": {"num_epochs_default": 5}}))
    monkeypatch.setenv(ENV_VAR, str(edited))
    with pytest.raises(ValueError, match="written under schedule 'smoke'"):
        in_process_trainer("SPConFinetuneTrainer").load_checkpoint(str(path))


def test_committed_projector_schedule_is_quality_plus_its_one_change() -> None:
    """benchmarks/schedules/quality_projector_last_conv.json (the controlled run of the projector's
    input) differs from the built-in quality schedule in the pre-training's projector_input only."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "schedules" / "quality_projector_last_conv.json"
    schedule = load_schedule(str(path))
    quality = SCHEDULES["quality"]
    assert dict(schedule.pretrain) == {**quality.pretrain, "projector_input": "last_conv"}
    assert dict(schedule.finetune) == dict(quality.finetune)
    assert dict(schedule.semisupervised) == dict(quality.semisupervised)
