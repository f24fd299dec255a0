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

This module orchestrates; the plan and its checks are in ``plan``, the nnU-Net commands in
``commands``, the working folder's files in ``files``, the progress lines in ``progress``, the
runs' records and tables in ``records`` and ``results``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from spcl_nnunet.data.sidecars import SIDECAR_FILES, install_sidecars
from spcl_nnunet.data.splits import FoldSpec
from spcl_nnunet.experiment.commands import (bind_thread, core_shares, cpu_share_environment, evaluate_command,
                                             nnunet_environment, predict_command, run_command,
                                             terminate_running_commands, train_command, validates_after_training)
from spcl_nnunet.experiment.files import (checkpoint_stamp, link_test_set, pretraining_results, replace_folder,
                                          run_folder, training_folder, training_state, write_json)
from spcl_nnunet.experiment.methods import Method, pretraining_start
from spcl_nnunet.experiment.plan import (EVALUATIONS, EXPERIMENT_FILE, PRETRAIN_FOLD, ExperimentConfig, Plan,
                                         experiment_record, make_plan, pretraining_fold)
from spcl_nnunet.experiment.progress import Progress, clock
from spcl_nnunet.experiment.records import current_record, load_records, run_record, save_record, write_tables
from spcl_nnunet.experiment.results import percent, table3_markdown
from spcl_nnunet.training.schedules import ENV_VAR as SCHEDULE_ENV_VAR
from spcl_nnunet.training.schedules import SCHEDULES

# signals that stop an experiment as Ctrl-C does: its commands are stopped, what is finished is kept
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupted_exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number (130 for Ctrl-C), as a shell reports a process the signal ended."""
    name = str(interrupt)
    return 128 + (signal.Signals[name].value if name in signal.Signals.__members__ else signal.SIGINT.value)


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
        # on the CPU with several jobs, each job thread (and every command it starts) keeps to its share of the cores
        jobs = plan.config.jobs
        self.core_shares = core_shares(jobs) if plan.device == "cpu" and jobs > 1 else None
        self.job_numbers = itertools.count()
        self.job = threading.local()

    # ------------------------------------------------------------------ environment
    def base_env(self) -> dict[str, str]:
        """The environment of every nnU-Net command: nnU-Net's data folders, the schedule
        (``SPCL_SCHEDULE``), and on the CPU each job's share of the cores."""
        env = nnunet_environment(self.workdir, self.plan.device, folders=("nnUNet_raw", "nnUNet_preprocessed"))
        if self.plan.device == "cpu":
            env = cpu_share_environment(env, self.config.jobs)
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

    def take_cores(self) -> None:
        """Bind the calling job thread to a share of the cores of its own, once per thread (a
        pool thread is one job slot for its life); nothing with one job or on a GPU."""
        if self.core_shares is None or getattr(self.job, "cores", None) is not None:
            return
        self.job.cores = self.core_shares[next(self.job_numbers) % len(self.core_shares)]
        bind_thread(self.job.cores)

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
                        self.workdir / "logs" / "plan_and_preprocess.log")
        stale = [n for n in SIDECAR_FILES
                 if not (plan.pre / n).is_file() or (plan.pre / n).read_bytes() != (plan.raw / n).read_bytes()]
        if stale:
            for path in install_sidecars(plan.raw, plan.pre):
                self.progress.line(f"installed {path}")
        link_test_set(self.workdir / "test_set", plan.raw, plan.dataset_json, list(plan.table.test))

    def preprocessed(self) -> bool:
        """nnU-Net's 2d plan and every training case preprocessed."""
        pre = self.plan.pre
        data = pre / "nnUNetPlans_2d"
        if not ((pre / "nnUNetPlans.json").is_file() and data.is_dir()):
            return False
        ending = self.plan.dataset_json["file_ending"]
        cases = {p.name[:-len(ending)] for p in (self.plan.raw / "labelsTr").glob(f"*{ending}")}
        return all((data / f"{case}.pkl").is_file() for case in cases)

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
                    self.env_for(results), log)
        final = out / "checkpoint_final.pth"
        if training_state(out, validated=validated) != "finished":
            raise RuntimeError(f"nnUNetv2_train finished but {out} has no complete training (log: {log})")
        return final, done

    def pretrain(self, trainer: str, fold: int, start_from: Future | None = None) -> Path:
        results = pretraining_results(self.config.pretraining_from or self.workdir / "pretraining", trainer)
        users = ", ".join(m.name for m in self.config.methods if trainer in (m.pretrainer, m.pretrainer_from))
        start = time.time()
        where = f", from {self.config.pretraining_from}" if self.config.pretraining_from else ""
        log = results / ("pretrain.log" if fold == PRETRAIN_FOLD else f"pretrain_fold_{fold}.log")
        self.take_cores()
        self.progress.line(f"pre-training {trainer} (fold {fold}, for {users}{where}) started (log: {log})")
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
        folder = run_folder(self.workdir, method.name, spec.fold)
        self.take_cores()
        self.progress.line(f"started  {name} (logs: {folder})")
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
        record = current_record(target, stamp, "summary.json")
        if record is not None:
            return record, "reused"
        if self.stopping.is_set():
            raise RuntimeError("interrupted")
        tmp = folder / ".test_predictions.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        run_command(predict_command(self.workdir / "test_set" / "imagesTs", tmp, self.config.dataset_id, spec.fold,
                                    method.trainer, self.plan.device), self.env_for(folder), folder / "predict.log")
        run_command(evaluate_command(self.workdir / "test_set" / "labelsTs", tmp), self.env_for(folder),
                    folder / "predict.log")
        summary = json.loads((tmp / "summary.json").read_text())
        record = run_record(self.plan, method, spec, stamp, pretrained, summary, target, target / "summary.json",
                            sorted(self.plan.table.test))
        save_record(tmp, record)
        replace_folder(tmp, target)
        return record, "made"

    def validation_scores(self, method: Method, spec: FoldSpec, folder: Path, checkpoint: Path,
                          pretrained: Path | None) -> tuple[dict[str, Any], str]:
        """The run's record from nnU-Net's final validation (``validation/summary.json``: the fold
        table's validation scans predicted with the final weights and scored by nnU-Net's
        evaluation); no test scan is predicted."""
        target = folder / EVALUATIONS["validation"]
        stamp = checkpoint_stamp(checkpoint)
        record = current_record(target, stamp)
        if record is not None:
            return record, "reused"
        summary_path = checkpoint.parent / "validation" / "summary.json"
        summary = json.loads(summary_path.read_text())
        cases = sorted(Path(c["reference_file"]).name[:-len(self.plan.dataset_json["file_ending"])]
                       for c in summary["metric_per_case"])
        expected = sorted(self.plan.table.val_of(spec))
        if cases != expected:
            raise RuntimeError(f"{summary_path} scores {len(cases)} case(s), not fold {spec.fold}'s {len(expected)} "
                               f"validation cases (nnU-Net's splits_final.json does not match spcl_folds.json?)")
        target.mkdir(parents=True, exist_ok=True)
        record = run_record(self.plan, method, spec, stamp, pretrained, summary, checkpoint.parent / "validation",
                            summary_path, cases, evaluated_on="validation")
        save_record(target, record)
        return record, "scored (validation)"

    # ------------------------------------------------------------------ all
    def execute(self) -> int:
        plan = self.plan
        self.progress.line(f"experiment on {plan.name}: {len(plan.config.methods)} method(s) x {len(plan.folds)} "
                           f"fold(s) = {len(plan.runs)} run(s), schedule {plan.config.schedule.name!r}, device "
                           f"{plan.device}, {plan.config.jobs} job(s)"
                           + (f" (each on its own share of the cores: {', '.join(map(str, map(sorted, self.core_shares)))})"
                              if self.core_shares else "") + f", working folder {self.workdir}")
        main = threading.current_thread() is threading.main_thread()
        # SIGTERM (kill, a job scheduler) and SIGHUP (the terminal closed) stop as Ctrl-C does: the commands
        # run in their own sessions, so nothing but the experiment can stop them
        previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS} if main else {}
        try:
            return self._execute()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

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
            # Ctrl-C, SIGTERM or SIGHUP: start nothing more, stop the running nnU-Net commands, keep what is finished
            self.stopping.set()
            terminate_running_commands()
            pool.shutdown(wait=True, cancel_futures=True)
            for path in self.write_tables():
                self.progress.line(f"wrote {path}")
            self.progress.line("interrupted: run the same command again to resume (finished steps are reused)")
            return interrupted_exit_code(interrupt)
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
        records = load_records(self.workdir, self.config.evaluate)
        if not records:
            return []
        with self.tables_lock:
            paths = write_tables(self.plan, records)
        if echo:
            self.out.write("\n" + table3_markdown(records) + "\n\n")
        return paths


def run_experiment(config: ExperimentConfig, out: TextIO | None = None) -> int:
    """Check everything, then run (see the module docstring); returns the exit code. ``out``:
    where the progress lines go (default: ``sys.stdout`` at the call)."""
    return Runner(make_plan(config), out).execute()
