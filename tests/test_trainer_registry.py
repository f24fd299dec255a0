"""Every trainer in trainers/ is found by nnU-Net's own lookup and is the package's class object."""

from __future__ import annotations

import importlib
import inspect

import pytest
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from spcl_nnunet.data.environment import trainers_dir
from spcl_nnunet.training import TRAINER_MODULES

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
