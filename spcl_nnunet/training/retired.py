"""Trainer names that were retired, and what replaced them.

Schedules were once also trainer classes (``SPConPretrainTrainer_demo``, ``MeanTeacherTrainer_smoke``,
...); now a schedule is data, named by ``SPCL_SCHEDULE`` (``spcl_nnunet.training.schedules``). The old
names live on in older scripts, notes and results folders, so nnU-Net still finds each of them in
``trainers/`` (``trainers/retired_trainers.py``) as a stub made here from ``RETIRED_TRAINERS``:

- training (``nnUNetv2_train -tr OLD``, also ``--c`` and ``--val``) builds the trainer, and the stub's
  ``__init__`` raises :class:`RetiredTrainerError`, whose message names the replacement trainer and
  schedule;
- prediction (``nnUNetv2_predict`` reads the trainer name from the checkpoint) only asks the class for
  its network: the stub builds the replacement's, the network the old class built, and says so, so
  that a model trained under an old name still predicts.

A stub carries no schedule and is not a subclass of any SP-Con trainer.
"""

from __future__ import annotations

import functools
import importlib

from spcl_nnunet.training.schedules import ENV_VAR as SCHEDULE_ENV_VAR

# retired trainer name -> (the trainer that replaces it, the schedule it ran)
RETIRED_TRAINERS: dict[str, tuple[str, str]] = {
    "SPConPretrainTrainer_smoke": ("SPConPretrainTrainer", "smoke"),
    "SPConPretrainTrainer_demo": ("SPConPretrainTrainer", "demo"),
    "SPConPretrainTrainer_quality": ("SPConPretrainTrainer", "quality"),
    "SPConFinetuneTrainer_smoke": ("SPConFinetuneTrainer", "smoke"),
    "SPConFinetuneTrainer_demo": ("SPConFinetuneTrainer", "demo"),
    "SPConFinetuneTrainer_quality": ("SPConFinetuneTrainer", "quality"),
    "SPConBaselineTrainer_demo": ("SPConBaselineTrainer", "demo"),
    "SPConBaselineTrainer_quality": ("SPConBaselineTrainer", "quality"),
    "MeanTeacherTrainer_smoke": ("MeanTeacherTrainer", "smoke"),
    "MeanTeacherTrainer_quality": ("MeanTeacherTrainer", "quality"),
    "SPConMeanTeacherTrainer_smoke": ("SPConMeanTeacherTrainer", "smoke"),
    "SPConMeanTeacherTrainer_quality": ("SPConMeanTeacherTrainer", "quality"),
    "EntropyMinTrainer_smoke": ("EntropyMinTrainer", "smoke"),
    "EntropyMinTrainer_quality": ("EntropyMinTrainer", "quality"),
}


class RetiredTrainerError(RuntimeError):
    """A retired trainer name was asked to train."""


def retired_message(name: str) -> str:
    """What a user of the retired trainer ``name`` runs instead."""
    if name not in RETIRED_TRAINERS:
        raise KeyError(f"{name!r} is not a retired trainer name (retired: {', '.join(RETIRED_TRAINERS)})")
    replacement, schedule = RETIRED_TRAINERS[name]
    return (f"{name} was retired: run -tr {replacement} with {SCHEDULE_ENV_VAR}={schedule}, e.g. "
            f"'{SCHEDULE_ENV_VAR}={schedule} nnUNetv2_train DATASET 2d FOLD -tr {replacement}' (schedules are data "
            f"now, not trainer classes; its results go to {replacement}__<plans>__<configuration>)")


def replacement_class(name: str) -> type:
    """The library trainer class that replaces the retired trainer ``name``."""
    from spcl_nnunet.training import TRAINER_MODULES

    replacement = RETIRED_TRAINERS[name][0]
    for module in map(importlib.import_module, TRAINER_MODULES):
        if isinstance(getattr(module, replacement, None), type):
            return getattr(module, replacement)
    raise LookupError(f"retired trainer {name}: its replacement {replacement} is not defined in "
                      f"{', '.join(TRAINER_MODULES)}")


def retired_trainer(name: str) -> type:
    """The stub nnU-Net finds under the retired name ``name``: an ``nnUNetTrainer`` subclass (nnU-Net's
    lookup asserts one) that refuses to be built and builds the replacement's network for prediction."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    message = retired_message(name)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device=None):
        raise RetiredTrainerError(message)

    @functools.wraps(nnUNetTrainer.build_network_architecture)
    def build_network_architecture(*args, **kwargs):
        replacement = replacement_class(name)
        print(f"{name} was retired; its checkpoints hold the network of {replacement.__name__}, which builds it "
              f"here (to train, run -tr {replacement.__name__} with {SCHEDULE_ENV_VAR}={RETIRED_TRAINERS[name][1]})")
        return replacement.build_network_architecture(*args, **kwargs)

    return type(name, (nnUNetTrainer,), {
        "__doc__": f"Retired: {message}", "__module__": __name__, "__init__": __init__,
        "build_network_architecture": staticmethod(build_network_architecture),
    })


def retired_trainers() -> dict[str, type]:
    """A stub for every retired name (``trainers/retired_trainers.py`` exports them)."""
    return {name: retired_trainer(name) for name in RETIRED_TRAINERS}
