"""Training schedules as data: class-attribute overrides per trainer role.

A schedule says how long and how hard the trainers train (epochs, iterations, batch shapes,
learning rates, checkpoint interval) without a new trainer class per method x schedule. The
trainers read it from the environment variable ``SPCL_SCHEDULE`` (a built-in name, or the path
of a JSON file with the fields of :class:`Schedule`) and apply the overrides of their role
(``pretrain``, ``finetune``; ``semisupervised`` applies ``finetune`` then ``semisupervised``)
as instance attributes before nnU-Net's ``__init__`` runs. Pure Python: no nnU-Net import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    """Every experiment schedule writes ``checkpoint_latest.pth`` after every epoch (a kill loses
    at most the running epoch)."""
    out = {role: dict(groups.get(role, {})) for role in ROLES}
    out["pretrain"]["checkpoint_every"] = 1
    out["finetune"]["checkpoint_every"] = 1
    return out


_QUALITY_LR = {"lr_init": 1e-4, "lr_multiplier": 10.0}

SCHEDULES: dict[str, Schedule] = {s.name: s for s in (
    Schedule("smoke", "seconds per run on a tiny dataset: checks that an experiment runs end to end (tests); "
                      "progress.png after the last epoch only",
             **_with_checkpoints(
                 pretrain={"num_epochs_default": 4, "iterations_per_epoch": 3, "val_iterations_per_epoch": 1,
                           "num_scans_per_batch": 2, "heatmap_every": 2, "warmup_epochs": 1,
                           "progress_plot_every": 4, **_QUALITY_LR},
                 finetune={"num_epochs_default": 4, "iterations_per_epoch": 3, "val_iterations_per_epoch": 1,
                           "batch_size_override": 2, "warmup_epochs": 1,
                           "progress_plot_every": 4, **_QUALITY_LR},
                 semisupervised={"unlabeled_batch_size": 2, "num_scans_per_batch": 2, "ema_decay": 0.99,
                                 "rampup_epochs": 2, "heatmap_every": 2})),
    Schedule("demo", "the demo's CPU-sized schedule (the *_demo trainers): pre-training 5 x 25 iterations of "
                     "4 scans x 3 slices x 2 views, fine-tuning 15 x 20 iterations at batch 8, no final "
                     "validation (the test scans are predicted), progress.png twice per training",
             **_with_checkpoints(
                 pretrain={"num_scans_per_batch": 4, "num_epochs_default": 5, "iterations_per_epoch": 25,
                           "val_iterations_per_epoch": 2, "heatmap_every": 4, "warmup_epochs": 2,
                           "progress_plot_every": 3, **_QUALITY_LR},
                 finetune={"num_epochs_default": 15, "iterations_per_epoch": 20, "val_iterations_per_epoch": 2,
                           "batch_size_override": 8, "warmup_epochs": 2, "final_validation": False,
                           "progress_plot_every": 8, **_QUALITY_LR},
                 # no *_demo semi-supervised trainers: the quality run's unlabeled side, ramp-up over 2 of 15 epochs
                 semisupervised={"unlabeled_batch_size": 6, "num_scans_per_batch": 2, "ema_decay": 0.99,
                                 "rampup_epochs": 2, "heatmap_every": 5})),
    Schedule("quality", "the quality run's CPU schedule (the *_quality trainers): pre-training 24 x 25 iterations "
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
    Schedule("diagnosis", "issue #19's controlled diagnosis on the CPU: the quality pre-training (24 x 25 iterations "
                          "of 4 scans x 3 slices x 2 views), fine-tuning 20 x 20 iterations at batch 8 with nnU-Net's "
                          "final validation (the fold table's validation scans), progress.png every 10 epochs; "
                          "the fine-tuning keeps the paper's recipe (encoder_lr_factor 1: arm (a), the arms' "
                          "reference)",
             **_with_checkpoints(
                 pretrain={"num_scans_per_batch": 4, "num_epochs_default": 24, "iterations_per_epoch": 25,
                           "val_iterations_per_epoch": 2, "heatmap_every": 6, "warmup_epochs": 3,
                           "progress_plot_every": 5, **_QUALITY_LR},
                 finetune={"num_epochs_default": 20, "iterations_per_epoch": 20, "val_iterations_per_epoch": 2,
                           "batch_size_override": 8, "warmup_epochs": 2, "progress_plot_every": 10,
                           "encoder_lr_factor": 1.0, **_QUALITY_LR},
                 semisupervised={"unlabeled_batch_size": 6, "num_scans_per_batch": 2, "ema_decay": 0.99,
                                 "rampup_epochs": 3, "heatmap_every": 10})),
    Schedule("gpu", "one GPU: measured on an H200 (2026-11-27, acdc profile, --jobs 8), one pre-training and 12 "
                    "trainings (baseline, spcon, mean-teacher, spcon-mt at 1 labeled scan x 3 splits) took 698 s of command time: "
                    "pre-training 40 x 50 iterations of 10 scans x 3 slices x 2 views, fine-tuning 40 x 50 "
                    "iterations at batch 16",
             **_with_checkpoints(
                 pretrain={"num_scans_per_batch": 10, "num_epochs_default": 40, "iterations_per_epoch": 50,
                           "val_iterations_per_epoch": 5, "heatmap_every": 10, "warmup_epochs": 3, **_QUALITY_LR},
                 finetune={"num_epochs_default": 40, "iterations_per_epoch": 50, "val_iterations_per_epoch": 5,
                           "batch_size_override": 16, "warmup_epochs": 3, **_QUALITY_LR},
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
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"schedule file {path}: not valid JSON ({err})") from err
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
