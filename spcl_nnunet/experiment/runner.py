"""Runs an experiment: methods x folds through nnU-Net's own commands, resumable and idempotent.

Layout of the working folder (every nnU-Net results folder is separate, so that trainings
running at once never write the same ``plans.json``):

    experiment.json                      dataset, schedule and test cases of this folder
    pretraining/<PRETRAINER>/            nnUNet_results of a shared pre-training (fold 0), pretrain.log
    runs/<method>/fold_<F>/              nnUNet_results of one run, train.log, predict.log,
        test_predictions/                nnUNetv2_predict output, nnU-Net's summary.json, run.json
        validation_scores/run.json       with --evaluate validation: the scores of nnU-Net's final
                                         validation (the fold table's validation scans), no test prediction
    test_set/imagesTs, labelsTs          links to the fold table's test cases
    logs/plan_and_preprocess.log
    results.json, results.csv, results.md, learning_curve.png   (validation_results.* etc. for --evaluate validation)

With ``--pretraining-from DIR`` the pre-trainings are taken, finished, from another experiment's
``pretraining/`` folder: recipes compared on the same pre-training checkpoints.

A training is finished when ``checkpoint_final.pth`` (and, for segmentation trainers, nnU-Net's
``validation/summary.json``) exists; with only ``checkpoint_latest.pth`` it is resumed with
``--c``. A run's predictions are reused while ``run.json`` names the current checkpoint (path,
size, mtime); they are made in a temporary sibling folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from spcl_nnunet.experiment.methods import Method, pretraining_order, pretraining_start, trainer_class
from spcl_nnunet.experiment.results import (dice_from_summary, percent, sort_records, table3_markdown, write_json,
                                            write_results)
from spcl_nnunet.data.metalabels import META_LABELS_FILE, load_meta_labels
from spcl_nnunet.experiment.pipeline import (Dataset, evaluate_folder, experiment_environment, foreground_labels,
                                             predict_test_set, resolve_device, run_command, terminate_running_commands,
                                             train_command, training_folder, training_state, validates_after_training)
from spcl_nnunet.data.sidecars import SIDECAR_FILES, install_sidecars
from spcl_nnunet.data.splits import FOLDS_FILE, FoldSpec, FoldTable, load_fold_table
from spcl_nnunet.training.schedules import ENV_VAR as SCHEDULE_ENV_VAR
from spcl_nnunet.training.schedules import SCHEDULES, Schedule

EXPERIMENT_FILE = "experiment.json"
RUN_FILE = "run.json"
EXPERIMENT_VERSION = 1
# where a run's record lives, per --evaluate: the test scans' predictions, or the scores of nnU-Net's
# final validation on the fold table's validation scans
EVALUATIONS = {"test": "test_predictions", "validation": "validation_scores"}
PRETRAIN_FOLD = 0     # labeled subsets: the pre-training pool (all training images but the fixed validation ones) is every fold's


@dataclass
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


def test_files(raw: Path, dataset_json: dict, case: str) -> tuple[list[Path], Path]:
    ending = dataset_json["file_ending"]
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {"0": "image"}
    images = [raw / "imagesTs" / f"{case}_{int(c):04d}{ending}" for c in sorted(channels, key=int)]
    return images, raw / "labelsTs" / f"{case}{ending}"


def check_test_set(raw: Path, dataset_json: dict, table: FoldTable) -> None:
    source = raw / FOLDS_FILE
    if not table.test:
        raise ValueError(f"{source} lists no test cases (\"test\"): the experiment evaluates on the fold table's "
                         f"test cases in imagesTs/labelsTs")
    missing = [str(p) for case in table.test for p in [*test_files(raw, dataset_json, case)[0],
                                                       test_files(raw, dataset_json, case)[1]] if not p.is_file()]
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
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
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


def pretraining_folder(root: Path, dataset: str, trainer: str, fold: int = PRETRAIN_FOLD) -> Path:
    """nnU-Net's output folder of the pre-training ``trainer`` of ``fold`` under a ``pretraining/`` root."""
    return training_folder(root / trainer / dataset, trainer, fold)


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
    environ = os.environ
    workdir = config.workdir.resolve()
    config = replace(config, workdir=workdir)
    if config.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {config.jobs}")
    raw_root = Path(environ.get("nnUNet_raw") or workdir / "nnUNet_raw")
    pre_root = Path(environ.get("nnUNet_preprocessed") or workdir / "nnUNet_preprocessed")
    raw = find_raw_dataset(raw_root, config.dataset_id)
    missing = [name for name in SIDECAR_FILES if not (raw / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{raw} lacks {', '.join(missing)}: the experiment needs the meta-labels and the folds. For your own "
            f"dataset run 'spcl_nnunet metalabels -d {config.dataset_id}' and 'spcl_nnunet folds -d "
            f"{config.dataset_id}'; datasets made by a converter ('spcl_nnunet convert ...') or 'spcl_nnunet "
            f"synthetic' have them")
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
    from spcl_nnunet.training.base import schedule_overrides

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


# ---------------------------------------------------------------------------------------------- progress
def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """One line per run started / finished, with elapsed time and an ETA from the finished runs."""

    def __init__(self, total: int, jobs: int, out: TextIO):
        self.total, self.jobs, self.out = total, jobs, out
        self.start = time.time()
        self.done = 0
        self.worked: list[float] = []       # durations of finished runs that trained or predicted
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            self.out.write(f"[{clock(time.time() - self.start)}] {text}\n")
            self.out.flush()

    def eta(self) -> str:
        remaining = self.total - self.done
        if remaining == 0:
            return "done"
        if not self.worked:
            return "ETA ?"
        return f"ETA {clock(sum(self.worked) / len(self.worked) * remaining / self.jobs)}"

    def finished(self, seconds: float, worked: bool) -> tuple[int, str]:
        with self.lock:
            self.done += 1
            if worked:
                self.worked.append(seconds)
            return self.done, self.eta()


# ---------------------------------------------------------------------------------------------- runner
def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def checkpoint_stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder onto ``target`` (the old one is removed after the rename)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


class Runner:
    def __init__(self, plan: Plan, out: TextIO | None = None):
        out = sys.stdout if out is None else out        # the stream of now, not of import time
        self.plan, self.config, self.out = plan, plan.config, out
        self.workdir = plan.config.workdir
        self.progress = Progress(len(plan.runs), plan.config.jobs, out)
        self.trained: list[str] = []
        self.failures: list[str] = []
        self.failed_runs = 0
        self.stopping = threading.Event()
        self.tables_lock = threading.Lock()

    # ------------------------------------------------------------------ environment
    def base_env(self) -> dict[str, str]:
        env = experiment_environment(self.workdir, self.plan.device, folders=("nnUNet_raw", "nnUNet_preprocessed"))
        schedule = self.config.schedule
        if SCHEDULES.get(schedule.name) == schedule:
            env[SCHEDULE_ENV_VAR] = schedule.name
        else:
            path = self.workdir / "schedule.json"
            write_json(path, schedule.to_json())
            env[SCHEDULE_ENV_VAR] = str(path)
        env.setdefault("MPLBACKEND", "agg")
        return env

    def env_for(self, results: Path) -> dict[str, str]:
        return {**self.env, "nnUNet_results": str(results)}

    # ------------------------------------------------------------------ preparation
    def prepare(self) -> None:
        plan = self.plan
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_json(self.workdir / EXPERIMENT_FILE, experiment_record(plan))
        self.env = self.base_env()
        (self.workdir / "logs").mkdir(exist_ok=True)
        if not self.preprocessed():
            self.progress.line(f"nnUNetv2_plan_and_preprocess -d {self.config.dataset_id} -c 2d "
                               f"(log: {self.workdir / 'logs' / 'plan_and_preprocess.log'})")
            cmd = ["nnUNetv2_plan_and_preprocess", "-d", str(self.config.dataset_id), "-c", "2d",
                   "--verify_dataset_integrity"]
            if plan.device == "cpu":
                cmd += ["-np", "1", "-npfp", "1"]
            run_command(cmd, {**self.env, "nnUNet_results": str(self.workdir / "pretraining")},
                        self.workdir / "logs" / "plan_and_preprocess.log", echo=False)
        stale = [n for n in SIDECAR_FILES
                 if not (plan.pre / n).is_file() or (plan.pre / n).read_bytes() != (plan.raw / n).read_bytes()]
        if stale:
            for path in install_sidecars(plan.raw, plan.pre):
                self.progress.line(f"installed {path}")
        self.make_test_set()

    def preprocessed(self) -> bool:
        """nnU-Net's 2d plan and every training case preprocessed."""
        pre = self.plan.pre
        data = pre / "nnUNetPlans_2d"
        if not ((pre / "nnUNetPlans.json").is_file() and data.is_dir()):
            return False
        ending = self.plan.dataset_json["file_ending"]
        cases = {p.name[:-len(ending)] for p in (self.plan.raw / "labelsTr").glob(f"*{ending}")}
        return all((data / f"{case}.pkl").is_file() for case in cases)

    def make_test_set(self) -> None:
        """``test_set/imagesTs`` and ``labelsTs``: links to exactly the fold table's test cases."""
        target = self.workdir / "test_set"
        tmp = self.workdir / ".test_set.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        for sub in ("imagesTs", "labelsTs"):
            (tmp / sub).mkdir(parents=True)
        for case in self.plan.table.test:
            images, label = test_files(self.plan.raw, self.plan.dataset_json, case)
            for image in images:
                os.symlink(image.resolve(), tmp / "imagesTs" / image.name)
            os.symlink(label.resolve(), tmp / "labelsTs" / label.name)
        replace_folder(tmp, target)

    # ------------------------------------------------------------------ steps
    def train(self, results: Path, trainer: str, fold: int, log: Path, pretrained: Path | None,
              describe: str) -> tuple[Path, str]:
        """Train unless finished; returns (checkpoint_final.pth, what was done)."""
        out = training_folder(results / self.plan.name, trainer, fold)
        validated = validates_after_training(trainer, self.config.schedule)
        state = training_state(out, validated=validated)
        if state == "finished":
            return out / "checkpoint_final.pth", "reused"
        if self.stopping.is_set():
            raise RuntimeError("interrupted")
        doing, done = {"new": ("training", "trained"), "interrupted": ("resuming with --c", "resumed (--c)"),
                       "validate": ("final validation (--val) of", "validated (--val)")}[state]
        if state != "new":
            self.progress.line(f"  {describe}: {doing} {out} (log {log})")
        log.parent.mkdir(parents=True, exist_ok=True)
        self.trained.append(f"{trainer} fold {fold}")
        run_command(train_command(self.config.dataset_id, fold, trainer, self.plan.device, state, pretrained),
                    self.env_for(results), log, echo=False)
        final = out / "checkpoint_final.pth"
        if training_state(out, validated=validated) != "finished":
            raise RuntimeError(f"nnUNetv2_train finished but {out} has no complete training (log: {log})")
        return final, done

    def pretrain(self, trainer: str, fold: int, start_from: Future | None = None) -> Path:
        results = (self.config.pretraining_from or self.workdir / "pretraining") / trainer
        users = ", ".join(m.name for m in self.config.methods if trainer in (m.pretrainer, m.pretrainer_from))
        start = time.time()
        where = f", from {self.config.pretraining_from}" if self.config.pretraining_from else ""
        self.progress.line(f"pre-training {trainer} (fold {fold}, for {users}{where}) started")
        log = results / ("pretrain.log" if fold == PRETRAIN_FOLD else f"pretrain_fold_{fold}.log")
        try:
            pretrained = start_from.result() if start_from is not None else None
            final, done = self.train(results, trainer, fold, log, pretrained, f"pre-training {trainer} fold {fold}")
        except Exception as err:
            self.progress.line(f"pre-training {trainer} fold {fold} FAILED: {err}")
            raise
        self.progress.line(f"pre-training {trainer} fold {fold} finished: {done} in {clock(time.time() - start)}")
        return final

    def run(self, method: Method, spec: FoldSpec, pretraining: Future | None) -> dict[str, Any]:
        start = time.time()
        name = (f"{method.name}, fold {spec.fold}" if self.plan.table.cross_validation else
                f"{method.name}, {spec.num_labeled} labeled, split {spec.split} (fold {spec.fold})")
        self.progress.line(f"started  {name}")
        folder = self.workdir / "runs" / method.name / f"fold_{spec.fold}"
        try:
            pretrained = pretraining.result() if pretraining is not None else None
            checkpoint, trained = self.train(folder, method.trainer, spec.fold, folder / "train.log", pretrained,
                                             name)
            evaluate = self.validation_scores if self.config.evaluate == "validation" else self.predict_and_evaluate
            record, predicted = evaluate(method, spec, folder, checkpoint, pretrained)
        except Exception as err:
            done, eta = self.progress.finished(time.time() - start, worked=False)
            status = "stopped " if self.stopping.is_set() else "FAILED  "
            self.progress.line(f"[{done}/{self.progress.total}] {status} {name}: {err} | {eta}")
            self.failures.append(f"{name}: {err}")
            self.failed_runs += 1
            raise
        if predicted != "reused":
            self.write_tables(echo=False)
        seconds = time.time() - start
        worked = trained != "reused" or predicted != "reused"
        done, eta = self.progress.finished(seconds, worked)
        scored = "validation Dice" if self.config.evaluate == "validation" else "Dice"
        self.progress.line(f"[{done}/{self.progress.total}] finished {name}: {scored} {percent(record['mean_dice'])} % "
                           f"(training {trained}, prediction {predicted}, {clock(seconds)}) | {eta}")
        return record

    def predict_and_evaluate(self, method: Method, spec: FoldSpec, folder: Path, checkpoint: Path,
                             pretrained: Path | None) -> tuple[dict[str, Any], str]:
        """nnUNetv2_predict on the test set and nnU-Net's evaluation, reused while ``run.json``
        names the current checkpoint."""
        target = folder / EVALUATIONS["test"]
        stamp = checkpoint_stamp(checkpoint)
        run_file = target / RUN_FILE
        if run_file.is_file() and (target / "summary.json").is_file():
            record = json.loads(run_file.read_text())
            if record.get("checkpoint") == stamp:
                return record, "reused"
        if self.stopping.is_set():
            raise RuntimeError("interrupted")
        tmp = folder / ".test_predictions.tmp"
        dataset = Dataset(self.config.dataset_id, self.plan.name, self.plan.raw, self.plan.pre, folder / self.plan.name)
        predict_test_set(self.env_for(folder), dataset, spec.fold, method.trainer, self.plan.device, tmp,
                         folder / "predict.log", images=self.workdir / "test_set" / "imagesTs", echo=False)
        evaluate_folder(self.plan.dataset_json, self.workdir / "test_set" / "labelsTs", tmp)
        summary = json.loads((tmp / "summary.json").read_text())
        record = self.record(method, spec, stamp, pretrained, summary, target, target / "summary.json",
                             sorted(self.plan.table.test))
        write_json(tmp / RUN_FILE, record)
        replace_folder(tmp, target)
        return record, "made"

    def validation_scores(self, method: Method, spec: FoldSpec, folder: Path, checkpoint: Path,
                          pretrained: Path | None) -> tuple[dict[str, Any], str]:
        """The run's record from nnU-Net's final validation (``validation/summary.json``: the fold
        table's validation scans predicted with the final weights and scored by nnU-Net's
        evaluation); no test scan is predicted."""
        target = folder / EVALUATIONS["validation"]
        stamp = checkpoint_stamp(checkpoint)
        run_file = target / RUN_FILE
        if run_file.is_file() and json.loads(run_file.read_text()).get("checkpoint") == stamp:
            return json.loads(run_file.read_text()), "reused"
        summary_path = checkpoint.parent / "validation" / "summary.json"
        summary = json.loads(summary_path.read_text())
        cases = sorted(Path(c["reference_file"]).name[:-len(self.plan.dataset_json["file_ending"])]
                       for c in summary["metric_per_case"])
        expected = sorted(self.plan.table.val_of(spec))
        if cases != expected:
            raise RuntimeError(f"{summary_path} scores {len(cases)} case(s), not fold {spec.fold}'s {len(expected)} "
                               f"validation cases (nnU-Net's splits_final.json does not match spcl_folds.json?)")
        target.mkdir(parents=True, exist_ok=True)
        record = self.record(method, spec, stamp, pretrained, summary, checkpoint.parent / "validation", summary_path,
                             cases, evaluated_on="validation")
        write_json(run_file, record)
        return record, "scored (validation)"

    def record(self, method: Method, spec: FoldSpec, stamp: dict, pretrained: Path | None, summary: dict,
               prediction_folder: Path, summary_path: Path, cases: list[str], evaluated_on: str = "test"
               ) -> dict[str, Any]:
        dice, mean = dice_from_summary(summary, foreground_labels(self.plan.dataset_json))
        return {"method": method.name, "label": method.label, "trainer": method.trainer,
                "pretrainer": method.pretrainer,
                "pretrainer_from": method.pretrainer_from, "fold": spec.fold,
                "num_labeled": self.plan.table.group_count(spec), "training_cases": len(spec.labeled),
                "folds": self.plan.table.kind,
                "split": spec.split, "labeled_cases": list(spec.labeled),
                "checkpoint": stamp, "pretrained_weights": str(pretrained) if pretrained else None,
                "prediction_folder": str(prediction_folder), "summary": str(summary_path),
                f"{evaluated_on}_cases": cases, "evaluated_on": evaluated_on, "dice": dice, "mean_dice": mean}

    # ------------------------------------------------------------------ all
    def execute(self) -> int:
        plan = self.plan
        self.progress.line(f"experiment on {plan.name}: {len(plan.config.methods)} method(s) x {len(plan.folds)} "
                           f"fold(s) = {len(plan.runs)} run(s), schedule {plan.config.schedule.name!r}, device "
                           f"{plan.device}, {plan.config.jobs} job(s), working folder {self.workdir}")
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main else None   # SIGTERM stops as Ctrl-C does
        try:
            return self._execute()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _execute(self) -> int:
        plan = self.plan
        pool = ThreadPoolExecutor(max_workers=plan.config.jobs)
        try:
            self.prepare()
            pretrainings: dict[tuple[str, int], Future] = {}
            shared = plan.config.shared_pretraining
            pretrain_folds = list(dict.fromkeys(pretraining_fold(plan.table, f, shared) for f in plan.folds))
            for fold in pretrain_folds:
                for trainer in plan.pretrainers:      # a pre-training is submitted after the one it starts from
                    start = pretraining_start(plan.config.methods, trainer)
                    pretrainings[trainer, fold] = pool.submit(self.pretrain, trainer, fold,
                                                              pretrainings.get((start, fold)))
            # one job: fold by fold (the pre-trainings were submitted first), so an interrupted experiment
            # leaves whole splits; several jobs: scratch runs first, as a run that waits for its
            # pre-training holds a job slot idle (sorted is stable: fold order within each group)
            ordered = (plan.runs if plan.config.jobs == 1
                       else sorted(plan.runs, key=lambda run: run[0].pretrainer is not None))
            futures = [pool.submit(self.run, m, f, pretrainings.get((m.pretrainer, pretraining_fold(plan.table, f, shared))))
                       for m, f in ordered]
            for future in futures + list(pretrainings.values()):
                future.exception()
        except KeyboardInterrupt as interrupt:
            # Ctrl-C or SIGTERM: start nothing more, stop the running nnU-Net commands, keep what is finished
            self.stopping.set()
            terminate_running_commands()
            pool.shutdown(wait=True, cancel_futures=True)
            for path in self.write_tables():
                self.progress.line(f"wrote {path}")
            self.progress.line("interrupted: run the same command again to resume (finished steps are reused)")
            return 143 if str(interrupt) == "SIGTERM" else 130
        pool.shutdown()
        for (trainer, fold), future in pretrainings.items():
            if future.exception() is not None:
                self.failures.insert(0, f"pre-training {trainer} fold {fold}: {future.exception()}")
        paths = self.write_tables()
        self.progress.line(f"{len(plan.runs) - self.failed_runs}/{len(plan.runs)} run(s) finished; nnUNetv2_train "
                           f"ran {len(self.trained)} time(s)")
        for path in paths:
            self.progress.line(f"wrote {path}")
        if self.failures:
            self.progress.line("FAILED:\n  " + "\n  ".join(dict.fromkeys(self.failures)))
            return 1
        return 0

    def write_tables(self, echo: bool = True) -> list[Path]:
        """Tables of every finished run recorded in the working folder (this dataset and schedule);
        rewritten after every finished run, so a long experiment shows its results as they come."""
        from spcl_nnunet.experiment.methods import METHODS

        evaluate = self.config.evaluate
        records = [json.loads(p.read_text())
                   for p in sorted(self.workdir.glob(f"runs/*/fold_*/{EVALUATIONS[evaluate]}/{RUN_FILE}"))]
        if not records:
            return []
        records = sort_records(records, list(METHODS))
        table = self.plan.table
        cases = table.test if evaluate == "test" else table.validation_cases()
        header = {"dataset": self.plan.name, "dataset_id": self.config.dataset_id,
                  "schedule": self.config.schedule.name, "evaluated_on": evaluate, f"{evaluate}_cases": sorted(cases),
                  "folds": table.kind, "pretraining": pretraining_note(table, self.config.shared_pretraining)}
        title = f"{self.plan.name}: schedule {self.config.schedule.name!r}, {len(records)} run(s)"
        with self.tables_lock:
            notes = []
            if table.cross_validation:
                notes.append(f"Folds: {len(table.folds)}-fold cross-validation over the {len(table.train_pool)} labeled "
                             f"scans, grouped by patient; each fold is scored on its own validation scans, and the "
                             f"paired comparisons are over folds.")
            if any(r.get("pretrainer") for r in records):
                notes.append(f"Pre-training: {header['pretraining']}.")
            paths = write_results(self.workdir, records, header, title, scans=evaluate, notes=notes)
        if echo:
            self.out.write("\n" + table3_markdown(records) + "\n\n")
        return paths


def run_experiment(config: ExperimentConfig, out: TextIO | None = None) -> int:
    """Check everything, then run (see the module docstring); returns the exit code. ``out``:
    where the progress lines go (default: ``sys.stdout`` at the call)."""
    return Runner(make_plan(config), out).execute()
