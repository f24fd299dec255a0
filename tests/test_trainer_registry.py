"""Every trainer in trainers/ is found by nnU-Net's own lookup and is the package's class object; a
retired trainer name is found too, refuses to train with a message that names its replacement, and a
model trained under it still predicts."""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunet_helpers import TinyDataset, in_process_trainer, set_nnunet_env
from spcl_nnunet.data.environment import trainers_dir
from spcl_nnunet.training import TRAINER_MODULES
from spcl_nnunet.training.retired import RETIRED_TRAINERS, RetiredTrainerError

MODULES = [importlib.import_module(name) for name in TRAINER_MODULES]
LIBRARY_TRAINERS = {name: obj for module in MODULES for name, obj in vars(module).items()
                    if inspect.isclass(obj) and issubclass(obj, nnUNetTrainer) and obj.__module__ == module.__name__}


def test_trainers_folder_exports_every_library_trainer() -> None:
    exported = set()
    for path in trainers_dir().glob("*.py"):
        source = path.read_text()
        exported |= {name for name in LIBRARY_TRAINERS if f"    {name},\n" in source}
    assert exported == set(LIBRARY_TRAINERS), sorted(set(LIBRARY_TRAINERS) ^ exported)


@pytest.mark.parametrize("name", sorted(LIBRARY_TRAINERS))
def test_nnunet_lookup_returns_the_package_class(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    found = recursive_find_trainer_class_by_name(name)
    assert found is LIBRARY_TRAINERS[name]
    # nnU-Net records the explicit __init__ signature of a trainer (no *args/**kwargs)
    assert list(inspect.signature(found.__init__).parameters) == \
        ["self", "plans", "configuration", "fold", "dataset_json", "device"]
    assert importlib.import_module(found.__module__) in MODULES


# ------------------------------------------------------------------------------ retired names
def test_retired_names_point_at_a_library_trainer_and_a_built_in_schedule() -> None:
    from spcl_nnunet.training.schedules import SCHEDULES

    assert len(RETIRED_TRAINERS) == 14
    for name, (replacement, schedule) in RETIRED_TRAINERS.items():
        assert name not in LIBRARY_TRAINERS, name
        assert LIBRARY_TRAINERS[replacement].schedule_role is not None, name
        assert schedule in SCHEDULES and name == f"{replacement}_{schedule}", name


def test_nnunet_lookup_of_a_retired_name_refuses_to_train_and_names_the_replacement(
        tiny_dataset: TinyDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    for name, (replacement, schedule) in RETIRED_TRAINERS.items():
        found = recursive_find_trainer_class_by_name(name)      # what nnUNetv2_train and nnUNetv2_predict do
        assert found.__name__ == name and issubclass(found, nnUNetTrainer)
        assert not any(issubclass(found, trainer) for trainer in LIBRARY_TRAINERS.values())   # carries nothing
        with pytest.raises(RetiredTrainerError) as err:
            in_process_trainer(name)                             # nnU-Net's get_trainer_from_args
        assert str(err.value).startswith(f"{name} was retired: run -tr {replacement} with SPCL_SCHEDULE={schedule}")


def test_a_model_trained_under_a_retired_name_still_predicts(tiny_dataset: TinyDataset, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's predictor reads the trainer name from the checkpoint and only builds the network."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    set_nnunet_env(monkeypatch, tiny_dataset.env(tmp_path / "results"))
    trainer = in_process_trainer("SPConFinetuneTrainer")
    trainer.initialize()
    model = tmp_path / "SPConFinetuneTrainer_demo__nnUNetPlans__2d"
    (model / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copy(tiny_dataset.pre_dataset / ("nnUNetPlans.json" if name == "plans.json" else name), model / name)
    checkpoint = {**trainer.base_checkpoint(), "trainer_name": "SPConFinetuneTrainer_demo"}
    torch.save(checkpoint, model / "fold_0" / "checkpoint_final.pth")

    predictor = nnUNetPredictor(device=torch.device("cpu"))
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    assert "SPConFinetuneTrainer_demo was retired; its checkpoints hold the network of SPConFinetuneTrainer" \
        in capsys.readouterr().out
    state = predictor.network.state_dict()
    for key, value in checkpoint["network_weights"].items():
        assert torch.equal(state[key], value.cpu()), key
