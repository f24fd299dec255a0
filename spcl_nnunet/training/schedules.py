"""Training schedules as data: class-attribute overrides per trainer role.

A schedule says how long and how hard the trainers train (epochs, iterations, batch shapes,
learning rates, checkpoint interval) without a new trainer class per method x schedule. The
trainers read it from the environment variable ``SPCL_SCHEDULE`` (a built-in name, or the path
of a JSON file with the fields of :class:`Schedule`) and apply the overrides of their role
(``pretrain``, ``finetune``; ``semisupervised`` applies ``finetune`` then ``semisupervised``)
as instance attributes before nnU-Net's ``__init__`` runs: :func:`schedule_overrides` says which
overrides a trainer class takes. ``SPCL_SCHEDULE`` is the one way to name a schedule; the trainer
classes that once carried one (``*_smoke``, ``*_demo``, ``*_quality``) are retired
(``spcl_nnunet.training.retired``). Pure Python: no nnU-Net import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from spcl_nnunet.data.jsonfile import read_json

ENV_VAR = "SPCL_SCHEDULE"
ROLES = ("pretrain", "finetune", "semisupervised")
SCALAR_TYPES = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Schedule:
    """Class-attribute overrides per trainer role (``{attribute: value}``)."""

    name: str
    description: str
    pretrain: Mapping[str, Any] = field(default_factory=dict)
    finetune: Mapping[str, Any] = field(default_factory=dict)
    semisupervised: Mapping[str, Any] = field(default_factory=dict)

    def role_overrides(self, role: str) -> list[tuple[str, dict[str, Any]]]:
        """The override groups a trainer of ``role`` applies, in order: ``[(group, overrides)]``."""
        if role not in ROLES:
            raise ValueError(f"unknown trainer role {role!r} (roles: {', '.join(ROLES)})")
        groups = ("finetune", "semisupervised") if role == "semisupervised" else (role,)
        return [(group, dict(getattr(self, group))) for group in groups]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "pretrain": dict(self.pretrain),
                "finetune": dict(self.finetune), "semisupervised": dict(self.semisupervised)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> "Schedule":
        """Validate a decoded schedule; every error names ``source``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"name", "description", *ROLES})
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown} (expected name, description, {', '.join(ROLES)})")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{source}: expected \"name\" to be a non-empty string, got {name!r}")
        groups = {}
        for role in ROLES:
            group = data.get(role, {})
            if not isinstance(group, Mapping):
                raise ValueError(f"{source}: expected \"{role}\" to be an object of attribute overrides, got {group!r}")
            for key, value in group.items():
                if not isinstance(value, SCALAR_TYPES):
                    raise ValueError(f"{source}: \"{role}\".\"{key}\" must be a number, string, boolean or null, "
                                     f"got {value!r}")
            groups[role] = dict(group)
        return cls(name=name, description=str(data.get("description", "")), **groups)


def _with_checkpoints(**groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every experiment schedule may write ``checkpoint_latest.pth`` after any epoch, at most once per
    ``checkpoint_interval_s`` (the trainers' 300 s unless the schedule says otherwise): a kill loses
    at most that long plus the running epoch."""
    out = {role: dict(groups.get(role, {})) for role in ROLES}
    out["pretrain"]["checkpoint_every"] = 1
    out["finetune"]["checkpoint_every"] = 1
    return out


_QUALITY_LR = {"lr_init": 1e-4, "lr_multiplier": 10.0}

SCHEDULES: dict[str, Schedule] = {s.name: s for s in (
    Schedule("smoke", "seconds per run on a tiny dataset: checks that an experiment runs end to end (tests); "
                      "progress.png after the last epoch only, checkpoint_latest.pth after every epoch",
             **_with_checkpoints(
                 pretrain={"num_epochs_default": 4, "iterations_per_epoch": 3, "val_iterations_per_epoch": 1,
                           "num_scans_per_batch": 2, "heatmap_every": 2, "warmup_epochs": 1,
                           "progress_plot_every": 4, "checkpoint_interval_s": 0.0, **_QUALITY_LR},
                 finetune={"num_epochs_default": 4, "iterations_per_epoch": 3, "val_iterations_per_epoch": 1,
                           "batch_size_override": 2, "warmup_epochs": 1,
                           "progress_plot_every": 4, "checkpoint_interval_s": 0.0, **_QUALITY_LR},
                 semisupervised={"unlabeled_batch_size": 2, "num_scans_per_batch": 2, "ema_decay": 0.99,
                                 "rampup_epochs": 2, "heatmap_every": 2})),
    Schedule("demo", "the demo's CPU-sized schedule: pre-training 5 x 25 iterations of "
                     "4 scans x 3 slices x 2 views, fine-tuning 15 x 20 iterations at batch 8, no final "
                     "validation (the test scans are predicted), progress.png twice per training",
             **_with_checkpoints(
                 pretrain={"num_scans_per_batch": 4, "num_epochs_default": 5, "iterations_per_epoch": 25,
                           "val_iterations_per_epoch": 2, "heatmap_every": 4, "warmup_epochs": 2,
                           "progress_plot_every": 3, **_QUALITY_LR},
                 finetune={"num_epochs_default": 15, "iterations_per_epoch": 20, "val_iterations_per_epoch": 2,
                           "batch_size_override": 8, "warmup_epochs": 2, "final_validation": False,
                           "progress_plot_every": 8, **_QUALITY_LR},
                 # the quality run's unlabeled side, ramp-up over 2 of 15 epochs
                 semisupervised={"unlabeled_batch_size": 6, "num_scans_per_batch": 2, "ema_decay": 0.99,
                                 "rampup_epochs": 2, "heatmap_every": 5})),
    Schedule("quality", "the quality run's CPU schedule: pre-training 24 x 25 iterations "
                        "of 4 scans x 3 slices x 2 views, fine-tuning 35 x 20 iterations at batch 8, 6 unlabeled "
                        "slices per iteration",
             **_with_checkpoints(
                 pretrain={"num_scans_per_batch": 4, "num_epochs_default": 24, "iterations_per_epoch": 25,
                           "val_iterations_per_epoch": 2, "heatmap_every": 6, "warmup_epochs": 3,
                           "progress_plot_every": 5, **_QUALITY_LR},
                 finetune={"num_epochs_default": 35, "iterations_per_epoch": 20, "val_iterations_per_epoch": 2,
                           "batch_size_override": 8, "warmup_epochs": 3, "progress_plot_every": 5, **_QUALITY_LR},
                 semisupervised={"unlabeled_batch_size": 6, "num_scans_per_batch": 2, "ema_decay": 0.99,
                                 "rampup_epochs": 5, "heatmap_every": 7})),
    Schedule("gpu", "one GPU (its timings: benchmarks/README.md): pre-training 40 x 50 iterations of 10 scans "
                    "x 3 slices x 2 views, fine-tuning 40 x 50 iterations at batch 16, progress.png every 5 epochs",
             **_with_checkpoints(
                 pretrain={"num_scans_per_batch": 10, "num_epochs_default": 40, "iterations_per_epoch": 50,
                           "val_iterations_per_epoch": 5, "heatmap_every": 10, "warmup_epochs": 3,
                           "progress_plot_every": 5, **_QUALITY_LR},
                 finetune={"num_epochs_default": 40, "iterations_per_epoch": 50, "val_iterations_per_epoch": 5,
                           "batch_size_override": 16, "warmup_epochs": 3, "progress_plot_every": 5, **_QUALITY_LR},
                 semisupervised={"unlabeled_batch_size": 16, "num_scans_per_batch": 4, "ema_decay": 0.99,
                                 "rampup_epochs": 5, "heatmap_every": 10})),
    Schedule("paper", "the paper's schedule: the trainers' class defaults (pre-training 80 x 200 iterations, RAdam "
                      "5e-5 x 400; fine-tuning 80 x 200 iterations, RAdam 1e-7 x 300; the plan's batch size) with "
                      "10 scans x 3 partitions x 2 views = 60 views per pre-training batch, and a checkpoint after "
                      "every epoch",
             **_with_checkpoints(pretrain={"num_scans_per_batch": 10})),
)}


def load_schedule(spec: str) -> Schedule:
    """A built-in schedule by name, or a schedule from a JSON file (a path ending in ``.json``
    or an existing file)."""
    if spec in SCHEDULES:
        return SCHEDULES[spec]
    path = Path(spec)
    if spec.endswith(".json") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"schedule file {path} does not exist")
        data = read_json(path, "schedule file")
        return Schedule.from_json(data, source=f"schedule file {path}")
    raise ValueError(f"unknown schedule {spec!r}: known schedules are {', '.join(SCHEDULES)} "
                     f"(or the path of a JSON schedule file)")


def active_schedule(environ: Mapping[str, str] | None = None) -> Schedule | None:
    """The schedule named by ``SPCL_SCHEDULE`` (None when unset or empty)."""
    spec = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not spec:
        return None
    try:
        return load_schedule(spec)
    except (ValueError, FileNotFoundError) as err:
        raise type(err)(f"{ENV_VAR}={spec}: {err}") from err


# ---------------------------------------------------------------------- a schedule applied to a trainer class
def _trainer_root(cls: type) -> type:
    """The topmost class of ``cls``'s bases that declares ``schedule_role`` (``SPConTrainerBase``)."""
    return next(klass for klass in reversed(cls.__mro__) if "schedule_role" in vars(klass))


def _role_classes(cls: type, role: str) -> list[type]:
    """``cls``'s role family: every loaded trainer class under ``cls``'s root whose ``schedule_role``
    is ``role``."""
    family, stack = [], [_trainer_root(cls)]
    while stack:
        klass = stack.pop()
        if getattr(klass, "schedule_role", None) == role:
            family.append(klass)
        stack.extend(klass.__subclasses__())
    return family or [cls]


def _check_type(schedule: Schedule, group: str, key: str, default: Any, value: Any) -> None:
    """An override must fit the class default: bool for bool, a number for a number (a whole
    number for an int), a string for a string; None defaults and None values take anything."""
    if default is None or value is None:
        return
    numeric = (int, float)
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, numeric):
        ok = isinstance(value, numeric) and not (isinstance(default, int) and isinstance(value, float)
                                                 and not value.is_integer())
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = type(value) is type(default)
    if not ok:
        raise ValueError(f"schedule {schedule.name!r}, role {group!r}: {key} = {value!r} does not fit the trainer's "
                         f"default {default!r} ({type(default).__name__})")


def schedule_overrides(cls: type, schedule: Schedule) -> tuple[dict[str, Any], list[str]]:
    """(overrides ``cls`` applies, keys it skips) for a trainer class under ``schedule``.

    A key that no trainer of the role has is a ValueError naming the schedule, the role and the
    key. A key that only other trainers of the role have (``ema_decay`` for entropy
    minimisation, ``num_scans_per_batch`` for Mean Teacher) is skipped."""
    role = getattr(cls, "schedule_role", None)
    if role is None:
        raise ValueError(f"{cls.__name__} has no schedule_role: it cannot run under schedule {schedule.name!r}")
    applied: dict[str, Any] = {}
    skipped: list[str] = []
    for group, overrides in schedule.role_overrides(role):
        family = _role_classes(cls, group)
        for key, value in overrides.items():
            if key.startswith("_") or not any(hasattr(klass, key) for klass in family):
                raise ValueError(f"schedule {schedule.name!r}, role {group!r}: unknown key {key!r}: no "
                                 f"{group} trainer has a class attribute of that name ({cls.__name__} runs under "
                                 f"role {role!r})")
            if not hasattr(cls, key):
                skipped.append(key)
                continue
            default = getattr(cls, key)
            _check_type(schedule, group, key, default, value)
            is_int = isinstance(default, int) and not isinstance(default, bool)
            applied[key] = int(value) if is_int and isinstance(value, float) else value
    return applied, skipped
