"""The plan of an experiment: its configuration, and every check that can fail before anything
runs (dataset, sidecars, folds, meta-labels, test cases, working folder, schedule against the
trainers, device). ``make_plan`` returns a new, checked configuration inside the plan; the one it
is given is frozen and never changed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spcl_nnunet.data.jsonfile import read_json
from spcl_nnunet.data.metalabels import META_LABELS_FILE, load_meta_labels
from spcl_nnunet.data.sidecars import require_raw_sidecars
from spcl_nnunet.data.splits import FOLDS_FILE, FoldSpec, FoldTable, load_fold_table
from spcl_nnunet.experiment.commands import data_folder, resolve_device, validates_after_training
from spcl_nnunet.experiment.files import files_of_test_case, pretraining_folder, training_state
from spcl_nnunet.experiment.methods import Method, pretraining_order, trainer_class
from spcl_nnunet.training.schedules import Schedule, schedule_overrides

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_VERSION = 1
# where a run's record lives, per --evaluate: the test scans' predictions, or the scores of nnU-Net's
# final validation on the fold table's validation scans
EVALUATIONS = {"test": "test_predictions", "validation": "validation_scores"}
PRETRAIN_FOLD = 0     # labeled subsets: the pre-training pool (all training images but the fixed validation ones) is every fold's


@dataclass(frozen=True)
class ExperimentConfig:
    dataset_id: int
    methods: list[Method]
    schedule: Schedule
    workdir: Path
    labeled: list[int] | None = None     # None: every labeled count of the fold table
    splits: list[int] | None = None      # None: every split
    device: str = "auto"
    jobs: int = 1
    evaluate: str | None = None          # "test": predict the test scans; "validation": nnU-Net's final validation;
                                         # None: "validation" on cross-validation folds, else "test"
    folds: list[int] | None = None       # fold numbers to run (instead of --labeled/--splits)
    shared_pretraining: bool = False     # cross-validation: one pre-training (fold 0's) for every fold
    pretraining_from: Path | None = None  # the pretraining/ folder of another experiment to take checkpoints from
    pretrain_only: bool = False          # train the methods' pre-trainings and stop (no runs)


@dataclass
class Plan:
    """What an experiment will do, checked before anything runs."""

    config: ExperimentConfig
    device: str
    raw: Path                 # raw dataset folder
    pre: Path                 # preprocessed dataset folder
    dataset_json: dict
    table: FoldTable
    folds: list[FoldSpec]
    pretrainers: list[str]    # in training order: a pre-training after the one it starts from
    runs: list[tuple[Method, FoldSpec]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.raw.name


# ---------------------------------------------------------------------------------------------- checks
def find_raw_dataset(raw_root: Path, dataset_id: int) -> Path:
    matches = sorted(p for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir()) if raw_root.is_dir() else []
    if not matches:
        raise FileNotFoundError(
            f"no raw dataset Dataset{dataset_id:03d}_* in nnUNet_raw = {raw_root}: convert one "
            f"('spcl_nnunet convert acdc -i RAW_DIR -d {dataset_id}', ...) or write the synthetic one "
            f"('spcl_nnunet synthetic -d {dataset_id}'), with nnUNet_raw set to the same folder")
    if len(matches) > 1:
        raise ValueError(f"several raw datasets with id {dataset_id} in {raw_root}: {[p.name for p in matches]}")
    return matches[0]


def select_folds(table: FoldTable, labeled: list[int] | None, splits: list[int] | None, source: str,
                 folds: list[int] | None = None) -> list[FoldSpec]:
    """The folds asked for: by number (``folds``), or by (labeled count, split). With both lists
    every pair must exist; with one list, each of its values must match a fold; with none, every
    fold."""
    if folds is not None:
        if labeled is not None or splits is not None:
            raise ValueError("--folds selects folds by number: give it without --labeled/--splits")
        unknown = [f for f in folds if not 0 <= f < len(table.folds)]
        if unknown:
            raise ValueError(f"{source} has no fold {unknown}: it has folds 0..{len(table.folds) - 1}")
        return [table.folds[f] for f in dict.fromkeys(folds)]
    existing = {(table.group_count(f), f.split): f for f in table.folds}
    available = "; ".join(f"{c} labeled: split(s) {', '.join(str(s) for (cc, s) in existing if cc == c)}"
                          for c in table.labeled_counts)
    if labeled is not None and splits is not None:
        missing = [(c, s) for c in labeled for s in splits if (c, s) not in existing]
        if missing:
            raise ValueError(f"{source} has no fold for (labeled count, split) {missing}; it has: {available}")
        return [existing[(c, s)] for c in dict.fromkeys(labeled) for s in dict.fromkeys(splits)]
    for name, values, index in (("labeled count", labeled, 0), ("split", splits, 1)):
        unknown = [v for v in values or [] if v not in {key[index] for key in existing}]
        if unknown:
            raise ValueError(f"{source} has no fold with {name} {unknown}; it has: {available}")
    return [f for f in table.folds if (labeled is None or table.group_count(f) in labeled)
            and (splits is None or f.split in splits)]


def check_test_set(raw: Path, dataset_json: dict, table: FoldTable) -> None:
    source = raw / FOLDS_FILE
    if not table.test:
        raise ValueError(f"{source} lists no test cases (\"test\"): the experiment evaluates on the fold table's "
                         f"test cases in imagesTs/labelsTs")
    missing = [str(p) for case in table.test for images, label in [files_of_test_case(raw, dataset_json, case)]
               for p in [*images, label] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) of the test cases listed in {source} are missing: "
                                f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")


def experiment_record(plan: Plan) -> dict[str, Any]:
    return {"version": EXPERIMENT_VERSION, "dataset_id": plan.config.dataset_id, "dataset": plan.name,
            "schedule": plan.config.schedule.to_json(), "test_cases": sorted(plan.table.test)}


def check_workdir(plan: Plan) -> None:
    """A working folder holds one dataset and one schedule (and one test set): the tables would
    mix them otherwise."""
    path = plan.config.workdir / EXPERIMENT_FILE
    if not path.is_file():
        return
    saved = read_json(path)
    current = experiment_record(plan)
    for key, what in (("dataset", "dataset"), ("schedule", "schedule"), ("test_cases", "test cases")):
        if saved.get(key) != current[key]:
            was, now = saved.get(key), current[key]
            if key == "schedule":
                was, now = repr((was or {}).get("name")), repr(now["name"])
                if was == now:
                    was, now = f"{was} with other values", f"{now} as defined now"
            elif key == "test_cases":
                was, now = f"{len(was or [])} cases", f"{len(now)} cases"
            else:
                was, now = repr(was), repr(now)
            raise ValueError(f"{plan.config.workdir} holds an experiment on {what} {was}, not {now} ({path}): use "
                             f"another --workdir")


def check_evaluation(config: ExperimentConfig, table: FoldTable) -> str:
    """The evaluation to run (``config.evaluate``, or by default the folds' validation scans for a
    cross-validation table, the test scans otherwise); ``validation`` scores nnU-Net's final
    validation, so every trainer must run it."""
    if config.evaluate is None:
        config = replace(config, evaluate="validation" if table.cross_validation else "test")
    if config.evaluate not in EVALUATIONS:
        raise ValueError(f"--evaluate must be one of {', '.join(EVALUATIONS)}, got {config.evaluate!r}")
    if config.evaluate == "validation":
        skipping = [m.name for m in config.methods if not validates_after_training(m.trainer, config.schedule)]
        if skipping:
            raise ValueError(f"--evaluate validation scores nnU-Net's final validation, which schedule "
                             f"{config.schedule.name!r} turns off (final_validation = False) for method(s) "
                             f"{', '.join(skipping)}: use a schedule that validates")
    return config.evaluate


def pretraining_fold(table: FoldTable, spec: FoldSpec, shared: bool) -> int:
    """The fold whose pre-training a run of ``spec`` starts from. Labeled subsets share one pool
    (every training image but the fixed validation ones): fold 0's. Cross-validation: the fold's
    own, which never sees the fold's validation images, unless ``shared`` (fold 0's for all)."""
    return spec.fold if table.cross_validation and not shared else PRETRAIN_FOLD


def pretraining_note(table: FoldTable, shared: bool) -> str:
    """What the tables say about the pre-trainings (an optimistic estimate is named as such)."""
    if not table.cross_validation:
        return "one pre-training for every fold (all training images but the fixed validation scans)"
    if shared:
        return ("ONE SHARED pre-training (fold 0's) for every fold: it saw the validation images of folds 1.. "
                "(without their labels), so their scores are optimistic")
    return "one pre-training per fold, which never saw that fold's validation images"


def check_pretraining_from(root: Path, dataset: str, pretrainers: list[str], folds: list[int]) -> None:
    """``--pretraining-from``: every pre-training the methods need is finished there (it is used,
    never trained or resumed in another experiment's folder)."""
    if not root.is_dir():
        raise FileNotFoundError(f"--pretraining-from {root}: no such folder (expected the pretraining/ folder of "
                                f"another experiment)")
    missing = [str(pretraining_folder(root, dataset, t, f) / "checkpoint_final.pth") for t in pretrainers for f in folds
               if training_state(pretraining_folder(root, dataset, t, f), validated=False) != "finished"]
    if missing:
        raise FileNotFoundError(f"--pretraining-from {root} has no finished pre-training for {dataset}: missing "
                                f"{', '.join(missing)} (finish it in its own experiment first)")


def make_plan(config: ExperimentConfig) -> Plan:
    """Every check that can fail before anything runs: dataset, sidecars, folds, meta-labels,
    test cases, working folder, schedule against the trainers, device."""
    workdir = config.workdir.resolve()
    config = replace(config, workdir=workdir)
    if config.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {config.jobs}")
    raw_root = data_folder("nnUNet_raw", workdir)
    pre_root = data_folder("nnUNet_preprocessed", workdir)
    raw = find_raw_dataset(raw_root, config.dataset_id)
    require_raw_sidecars(raw, config.dataset_id)
    meta = load_meta_labels(raw / META_LABELS_FILE)
    table = load_fold_table(raw)
    dataset_json = json.loads((raw / "dataset.json").read_text())
    folds = select_folds(table, config.labeled, config.splits, str(raw / FOLDS_FILE), config.folds)
    if config.shared_pretraining and not table.cross_validation:
        raise ValueError(f"--shared-pretraining applies to cross-validation folds; {raw / FOLDS_FILE} holds labeled "
                         f"subsets, whose folds share one pre-training anyway")
    for method in config.methods:
        lacking = [k for k in method.meta_labels if k not in meta.keys()]
        if lacking:
            raise ValueError(f"method {method.name!r} needs the meta-label(s) {lacking}, which "
                             f"{raw / META_LABELS_FILE} does not define (it has: {', '.join(meta.keys()) or 'none'} "
                             f"+ slice position)")
    config = replace(config, evaluate=check_evaluation(config, table))
    if config.evaluate == "test":
        check_test_set(raw, dataset_json, table)
    pretrainers = pretraining_order(config.methods)
    for trainer in pretrainers + list(dict.fromkeys(m.trainer for m in config.methods)):
        schedule_overrides(trainer_class(trainer), config.schedule)
    if config.pretrain_only and not pretrainers:
        raise ValueError(f"--pretrain-only: none of the methods {', '.join(m.name for m in config.methods)} "
                         f"is pre-trained")
    if config.pretrain_only and config.pretraining_from is not None:
        raise ValueError("--pretrain-only trains the pre-trainings in this working folder; --pretraining-from "
                         "takes them from another one: give one of the two")
    if config.pretraining_from is not None:
        config = replace(config, pretraining_from=config.pretraining_from.resolve())
        check_pretraining_from(config.pretraining_from, raw.name, pretrainers,
                               sorted({pretraining_fold(table, f, config.shared_pretraining) for f in folds}))
    plan = Plan(config=config, device=resolve_device(config.device), raw=raw, pre=pre_root / raw.name,
                dataset_json=dataset_json, table=table, folds=folds, pretrainers=pretrainers,
                runs=[] if config.pretrain_only else [(m, f) for f in folds for m in config.methods])
    check_workdir(plan)
    return plan
