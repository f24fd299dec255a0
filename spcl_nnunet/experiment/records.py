"""The record of each finished run (``run.json``) and the tables made from every record of a
working folder.

A record stands beside the run's evaluation (``test_predictions/`` or ``validation_scores/``):
method, trainers, fold, labeled count, split, the checkpoint it was made from (path, size,
mtime), the path of nnU-Net's ``summary.json`` and the Dice values exactly as read from it. A
record is reused while it names the current checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spcl_nnunet.data.splits import FoldSpec
from spcl_nnunet.experiment.commands import foreground_labels
from spcl_nnunet.experiment.files import write_json
from spcl_nnunet.experiment.methods import METHODS, Method
from spcl_nnunet.experiment.plan import EVALUATIONS, Plan, pretraining_note
from spcl_nnunet.experiment.results import dice_from_summary, sort_records, write_results

RUN_FILE = "run.json"


def run_record(plan: Plan, method: Method, spec: FoldSpec, stamp: dict, pretrained: Path | None, summary: dict,
               prediction_folder: Path, summary_path: Path, cases: list[str], evaluated_on: str = "test"
               ) -> dict[str, Any]:
    """The record of ``method``'s run on fold ``spec``, scored by nnU-Net's ``summary`` on ``cases``
    of the ``evaluated_on`` scans (test or validation)."""
    dice, mean = dice_from_summary(summary, foreground_labels(plan.dataset_json))
    return {"method": method.name, "label": method.label, "trainer": method.trainer,
            "pretrainer": method.pretrainer,
            "pretrainer_from": method.pretrainer_from, "fold": spec.fold,
            "num_labeled": plan.table.group_count(spec), "training_cases": len(spec.labeled),
            "folds": plan.table.kind,
            "split": spec.split, "labeled_cases": list(spec.labeled),
            "checkpoint": stamp, "pretrained_weights": str(pretrained) if pretrained else None,
            "prediction_folder": str(prediction_folder), "summary": str(summary_path),
            f"{evaluated_on}_cases": cases, "evaluated_on": evaluated_on, "dice": dice, "mean_dice": mean}


def current_record(folder: Path, stamp: dict, *needed: str) -> dict[str, Any] | None:
    """The record in ``folder`` if it names the checkpoint ``stamp`` and the files ``needed`` are
    there beside it; None: the evaluation must be made (again)."""
    path = folder / RUN_FILE
    if not path.is_file() or not all((folder / name).is_file() for name in needed):
        return None
    record = json.loads(path.read_text())
    return record if record.get("checkpoint") == stamp else None


def save_record(folder: Path, record: dict[str, Any]) -> None:
    write_json(folder / RUN_FILE, record)


def load_records(workdir: Path, evaluate: str) -> list[dict[str, Any]]:
    """Every record of the ``evaluate`` scans in the working folder, in the registry's method order."""
    paths = sorted(workdir.glob(f"runs/*/fold_*/{EVALUATIONS[evaluate]}/{RUN_FILE}"))
    return sort_records([json.loads(p.read_text()) for p in paths], list(METHODS))


def write_tables(plan: Plan, records: list[dict[str, Any]]) -> list[Path]:
    """results.json/csv/md and learning_curve.png (``validation_*`` for validation scores) of
    ``records`` in the plan's working folder, with the dataset, schedule, scans and pre-training
    named in the header and notes."""
    config, table = plan.config, plan.table
    evaluate = config.evaluate
    cases = table.test if evaluate == "test" else table.validation_cases()
    header = {"dataset": plan.name, "dataset_id": config.dataset_id,
              "schedule": config.schedule.name, "evaluated_on": evaluate, f"{evaluate}_cases": sorted(cases),
              "folds": table.kind, "pretraining": pretraining_note(table, config.shared_pretraining)}
    title = f"{plan.name}: schedule {config.schedule.name!r}, {len(records)} run(s)"
    notes = []
    if table.cross_validation:
        notes.append(f"Folds: {len(table.folds)}-fold cross-validation over the {len(table.train_pool)} labeled "
                     f"scans, grouped by patient; each fold is scored on its own validation scans, and the "
                     f"paired comparisons are over folds.")
    if any(r.get("pretrainer") for r in records):
        notes.append(f"Pre-training: {header['pretraining']}.")
    return write_results(config.workdir, records, header, title, scans=evaluate, notes=notes)
