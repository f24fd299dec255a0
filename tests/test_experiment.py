"""``spcl_nnunet experiment`` end to end on the tiny dataset, through nnU-Net's own commands.

One experiment (the smoke schedule without nnU-Net's final validation, which the README test's
cross-validation experiment covers, lost and redone included; baseline + spcon, folds 0 and 1 = 1 and 2
labeled scans, two jobs at once) is stopped (SIGTERM, as ``kill`` sends it: the experiment stops its nnU-Net
commands, each in its own session) once the SP-Con fine-tuning of fold 0 has written its first
``checkpoint_latest.pth``, then run again to completion, then a third time, which must train
nothing. Errors that must come before anything runs are checked through the
CLI as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nnunet_helpers import (TINY_ID, TinyDataset, check, command, epochs_in, load_checkpoint, run,
                            smoke_schedule_file, tail)
from spcl_nnunet.experiment.results import mean_std_cell, percent

pytestmark = pytest.mark.e2e

METHODS = ("baseline", "spcon")
ARGS = ["--methods", *METHODS, "--labeled", "1", "2", "--splits", "0", "--schedule", "smoke", "--device", "cpu"]
EPOCHS = 4          # smoke schedule
SCHEDULE = "smoke_without_final_validation"


def experiment(workdir: Path, *args: str) -> list[str]:
    return [command("spcl_nnunet"), "experiment", "-d", str(TINY_ID), *args, "--workdir", str(workdir)]


def training_dir(workdir: Path, name: str, method: str, trainer: str, fold: int) -> Path:
    return workdir / "runs" / method / f"fold_{fold}" / name / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"


def command_lines(workdir: Path, program: str) -> list[str]:
    """Every ``$ program ...`` line the experiment wrote into its step logs."""
    return [line for log in sorted(workdir.rglob("*.log")) for line in log.read_text().splitlines()
            if line.startswith(f"$ {program} ")]


def checkpoints(workdir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(workdir.rglob("*.pth"))}


@pytest.fixture(scope="module")
def runs(tiny_dataset: TinyDataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("experiment")
    workdir = root / "work"
    env = tiny_dataset.env(root / "unused_results")
    target = training_dir(workdir, tiny_dataset.name, "spcon", "SPConFinetuneTrainer", 0)
    latest = target / "checkpoint_latest.pth"
    schedule = smoke_schedule_file(root / f"{SCHEDULE}.json", final_validation=False)
    args = [a if a != "smoke" else str(schedule) for a in ARGS]

    # 1. start, stop the experiment once both things the tests below need hold at the same time: the
    # SP-Con fine-tuning of fold 0 has a checkpoint_latest.pth (it is unfinished: nnU-Net deletes that file
    # once checkpoint_final.pth is written) and a baseline run has finished (its run.json is renamed into
    # place after the prediction). With two jobs the runner starts that fine-tuning only after two of
    # (pre-training, baseline fold 0, baseline fold 1) ended, so a baseline has finished by then; the
    # wait names either condition that does not come instead of depending on that order
    baseline_records = [workdir / "runs" / "baseline" / f"fold_{f}" / "test_predictions" / "run.json" for f in (0, 1)]
    first_log = root / "first_run.txt"
    with open(first_log, "w") as sink:
        proc = subprocess.Popen(experiment(workdir, *args, "--jobs", "2"), env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 600
        try:
            while not (latest.is_file() and any(r.is_file() for r in baseline_records)):
                assert proc.poll() is None, f"the experiment ended before the kill:\n{first_log.read_text()[-6000:]}"
                assert not (target / "checkpoint_final.pth").is_file(), \
                    f"the SP-Con fine-tuning of fold 0 finished before any baseline run:\n{first_log.read_text()[-6000:]}"
                assert time.time() < deadline, \
                    (f"after 600 s: {latest} exists {latest.is_file()}, a baseline run.json exists "
                     f"{any(r.is_file() for r in baseline_records)}:\n{first_log.read_text()[-6000:]}")
                time.sleep(0.05)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            stopped = proc.wait(timeout=300)
    killed = {"latest_exists": latest.is_file(), "final_exists": (target / "checkpoint_final.pth").is_file(),
              "exit": stopped}
    if killed["latest_exists"]:
        saved = load_checkpoint(latest)
        killed.update(epoch=saved["current_epoch"], schedule=saved["spcl_schedule"])
    # 2. the same command again: resumes and finishes
    second = check(run(experiment(workdir, *args, "--jobs", "2"), env, timeout=900))
    after_second = {"results": {n: (workdir / n).read_bytes() for n in ("results.json", "results.csv", "results.md")},
                    "checkpoints": checkpoints(workdir), "train": command_lines(workdir, "nnUNetv2_train"),
                    "predict": command_lines(workdir, "nnUNetv2_predict")}

    # 3. and once more: nothing to train or predict
    third = check(run(experiment(workdir, *args), env, timeout=300))
    return {"workdir": workdir, "env": env, "target": target, "killed": killed, "first": first_log.read_text(),
            "args": args,
            "second": second.stdout, "third": third.stdout, "after_second": after_second, "name": tiny_dataset.name,
            "raw": tiny_dataset.raw_dataset}


def test_killed_training_resumes_from_its_checkpoint(runs: dict) -> None:
    killed, target = runs["killed"], runs["target"]
    assert killed["latest_exists"] and not killed["final_exists"], runs["first"][-4000:]
    assert killed["exit"] == 128 + signal.SIGTERM and "interrupted: run the same command again" in runs["first"]
    assert 1 <= killed["epoch"] < EPOCHS
    assert killed["schedule"]["name"] == SCHEDULE and killed["schedule"]["overrides"]["checkpoint_every"] == 1
    assert re.search(r"resuming with --c .*SPConFinetuneTrainer__nnUNetPlans__2d/fold_0", runs["second"]), \
        runs["second"][-4000:]
    # nnU-Net's own training logs: the resumed run starts at the saved epoch and goes to the end
    logs = {p.name: epochs_in(p.read_text()) for p in target.glob("training_log_*.txt")}
    started = [epochs for epochs in logs.values() if epochs and epochs[0] == 0]
    resumed = [epochs for epochs in logs.values() if epochs and epochs[0] == killed["epoch"]]
    assert len(started) == 1 and resumed == [list(range(killed["epoch"], EPOCHS))], logs
    final = load_checkpoint(target / "checkpoint_final.pth")
    assert final["current_epoch"] == EPOCHS and len(final["logging"]["train_losses"]) == EPOCHS
    # the resume went through --c, without -pretrained_weights (nnU-Net refuses both together)
    commands = (target.parents[2] / "train.log").read_text().splitlines()
    commands = [c for c in commands if c.startswith("$ nnUNetv2_train")]
    assert len(commands) == 2, commands
    assert "-pretrained_weights" in commands[0] and "--c" not in commands[0].split()
    assert commands[1].split()[-1] == "--c" and "-pretrained_weights" not in commands[1]


def test_pretraining_is_shared_and_trained_once(runs: dict) -> None:
    workdir = runs["workdir"]
    pre = workdir / "pretraining" / "SPConPretrainTrainer" / runs["name"] / "SPConPretrainTrainer__nnUNetPlans__2d"
    assert [p.name for p in pre.iterdir() if p.is_dir()] == ["fold_0"]
    weights = str(pre / "fold_0" / "checkpoint_final.pth")
    records = json.loads((workdir / "results.json").read_text())["runs"]
    spcon = [r for r in records if r["method"] == "spcon"]
    assert len(spcon) == 2 and all(r["pretrained_weights"] == weights for r in spcon)
    assert all(r["pretrained_weights"] is None for r in records if r["method"] == "baseline")
    # trained once (the kill came later, during a fine-tuning that waits for it)
    assert len([c for c in runs["after_second"]["train"] if " -tr SPConPretrainTrainer " in c]) == 1


def test_third_run_trains_nothing(runs: dict) -> None:
    workdir, before = runs["workdir"], runs["after_second"]
    assert command_lines(workdir, "nnUNetv2_train") == before["train"]
    assert command_lines(workdir, "nnUNetv2_predict") == before["predict"]
    assert checkpoints(workdir) == before["checkpoints"]
    for name, content in before["results"].items():
        assert (workdir / name).read_bytes() == content, name
    assert "nnUNetv2_train ran 0 time(s)" in runs["third"], runs["third"][-3000:]
    assert len(re.findall(r"training reused, prediction reused", runs["third"])) == 4


def test_results_json_equals_nnunet_summaries(runs: dict) -> None:
    workdir = runs["workdir"]
    data = json.loads((workdir / "results.json").read_text())
    assert data["dataset"] == runs["name"] and data["schedule"] == SCHEDULE
    records = data["runs"]
    assert sorted((r["method"], r["num_labeled"], r["split"], r["fold"]) for r in records) == \
        sorted((m, n, 0, f) for m in METHODS for n, f in ((1, 0), (2, 1)))
    dataset_json = json.loads((runs["raw"] / "dataset.json").read_text())
    labels = {name: str(value) for name, value in dataset_json["labels"].items() if int(value) != 0}
    for r in records:
        summary_path = Path(r["summary"])
        assert summary_path.parent == workdir / "runs" / r["method"] / f"fold_{r['fold']}" / "test_predictions"
        summary = json.loads(summary_path.read_text())
        # scored by nnU-Net's evaluation as a command in its own session (in the experiment's process, its
        # worker pool waited forever when a kill of the experiment's process group took its worker)
        log = (summary_path.parents[1] / "predict.log").read_text()
        assert "$ nnUNetv2_evaluate_folder " in log and "dataset.json -pfile" in log, log[-2000:]
        assert r["mean_dice"] == summary["foreground_mean"]["Dice"]
        assert set(r["dice"]) == set(labels) and len(summary["mean"]) == 3
        for name, value in labels.items():
            assert r["dice"][name] == summary["mean"][value]["Dice"], (name, value)
        # the test set is exactly the fold table's test cases, predicted by this run's checkpoint
        predicted = sorted(p.name.split(".")[0] for p in summary_path.parent.glob("*.nii.gz"))
        assert predicted == r["test_cases"] and len(summary["metric_per_case"]) == len(predicted)
        checkpoint = Path(r["checkpoint"]["path"])
        assert checkpoint.stat().st_mtime_ns == r["checkpoint"]["mtime_ns"]
        assert checkpoint.parent.name == f"fold_{r['fold']}" and r["trainer"] in checkpoint.parent.parent.name


def test_tables_recompute_from_the_runs(runs: dict) -> None:
    workdir = runs["workdir"]
    records = json.loads((workdir / "results.json").read_text())["runs"]
    md = (workdir / "results.md").read_text()
    assert "ddof = 1" in md
    for count in (1, 2):
        section = md.split(f"### {count} labeled scan")[1].split("###")[0].split("## ")[0]
        for method, label in (("baseline", "baseline (scratch)"), ("spcon", "SP-Con (pre-train)")):
            at = [r for r in records if r["method"] == method and r["num_labeled"] == count]
            row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            expected = [label, percent(at[0]["mean_dice"])] + \
                [mean_std_cell([r["dice"][c] for r in at]) for c in ("RV", "MYO", "LV")] + \
                [mean_std_cell([r["mean_dice"] for r in at])]
            baseline = [r for r in records if r["method"] == "baseline" and r["num_labeled"] == count]
            difference = 100 * (at[0]["mean_dice"] - baseline[0]["mean_dice"])         # one split each
            expected.append("" if method == "baseline" else f"{difference:+.2f} (1 split)")
            assert cells == expected
            assert cells[-2].endswith("(n/a)")                      # one split: no std
    curve = md.split("Table 2 form")[1]
    for method, label in (("baseline", "baseline (scratch)"), ("spcon", "SP-Con (pre-train)")):
        row = next(line for line in curve.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert cells == [mean_std_cell([r["mean_dice"] for r in records if r["method"] == method
                                        and r["num_labeled"] == n]) for n in (1, 2)]
    csv_rows = (workdir / "results.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(records)
    for r, line in zip(records, csv_rows[1:]):
        assert line.split(",")[-2] == repr(r["mean_dice"]) and line.split(",")[-1] == r["summary"]
    assert (workdir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_lines(runs: dict) -> None:
    lines = [line for line in runs["second"].splitlines() if re.match(r"\[\d+:\d\d:\d\d\] \[\d/4\] finished ", line)]
    assert len(lines) == 4, runs["second"][-3000:]
    for line in lines:
        assert re.search(r"(baseline|spcon), [12] labeled, split 0 \(fold [01]\): Dice \d+\.\d\d %", line), line
        assert re.search(r"\| (ETA \d+:\d\d:\d\d|ETA \?|done)$", line), line
    assert re.search(r"\[4/4\] finished .*\| done$", runs["second"], flags=re.M)
    assert "Epoch" not in runs["second"]                       # nnU-Net's output goes to the logs
    assert "Epoch 0" in (runs["workdir"] / "runs" / "baseline" / "fold_0" / "train.log").read_text()


def test_another_schedule_in_the_same_workdir_is_refused(runs: dict) -> None:
    before = command_lines(runs["workdir"], "nnUNetv2_train")
    args = [a if a != runs["args"][ARGS.index("smoke")] else "demo" for a in runs["args"]]
    proc = run(experiment(runs["workdir"], *args), runs["env"], timeout=120)
    assert proc.returncode == 2, tail(proc)
    assert f"schedule '{SCHEDULE}', not 'demo'" in proc.stdout and "--workdir" in proc.stdout, tail(proc)
    assert command_lines(runs["workdir"], "nnUNetv2_train") == before


# ------------------------------------------------------------------------------ errors before anything runs
def _refused(args: list[str], env: dict, workdir: Path) -> str:
    proc = run(experiment(workdir, *args), env, timeout=120)
    assert proc.returncode == 2, tail(proc)
    assert "Traceback" not in proc.stdout, tail(proc)
    assert not workdir.exists()                                 # nothing was run, nothing was written
    return proc.stdout


def test_unknown_method(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    out = _refused(["--methods", "baseline", "spcn", "--schedule", "smoke"], tiny_dataset.env(tmp_path / "r"),
                   tmp_path / "work")
    assert "unknown method(s) spcn" in out
    for name in ("baseline", "spcon", "mean-teacher", "spcon-mt", "entropy-min"):
        assert name in out


def test_fold_the_dataset_does_not_have(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    env = tiny_dataset.env(tmp_path / "r")
    out = _refused(["--methods", "baseline", "--labeled", "4", "--schedule", "smoke"], env, tmp_path / "work")
    assert "no fold with labeled count [4]" in out and "1 labeled: split(s) 0; 2 labeled: split(s) 0" in out
    assert "spcl_folds.json" in out
    out = _refused(["--methods", "baseline", "--labeled", "1", "--splits", "0", "1", "--schedule", "smoke"], env,
                   tmp_path / "work")
    assert "no fold for (labeled count, split) [(1, 1)]" in out


def test_unknown_schedule(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    out = _refused(["--methods", "baseline", "--schedule", "fast"], tiny_dataset.env(tmp_path / "r"),
                   tmp_path / "work")
    assert "unknown schedule 'fast'" in out and "smoke, demo, quality, gpu, paper" in out


@pytest.mark.parametrize("remove", [("meta_labels.json",), ("spcl_folds.json", "splits_final.json")])
def test_dataset_without_sidecars(tiny_dataset: TinyDataset, tmp_path: Path, remove: tuple[str, ...]) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(tiny_dataset.raw_dataset, raw / tiny_dataset.name)
    for name in remove:
        (raw / tiny_dataset.name / name).unlink()
    env = {**tiny_dataset.env(tmp_path / "r"), "nnUNet_raw": str(raw)}
    out = _refused(["--methods", "baseline", "--schedule", "smoke"], env, tmp_path / "work")
    assert f"{raw / tiny_dataset.name} lacks {', '.join(remove)}" in out
    dataset_id = tiny_dataset.name.split("_")[0].removeprefix("Dataset")
    assert f"spcl_nnunet metalabels -d {dataset_id}" in out and f"spcl_nnunet folds -d {dataset_id}" in out
    assert "spcl_nnunet synthetic" in out


def test_meta_label_the_dataset_lacks(tiny_dataset: TinyDataset, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(tiny_dataset.raw_dataset, raw / tiny_dataset.name)
    meta_file = raw / tiny_dataset.name / "meta_labels.json"
    meta = json.loads(meta_file.read_text())
    meta["cases"] = {case: {"patient": labels["patient"]} for case, labels in meta["cases"].items()}
    meta_file.write_text(json.dumps(meta))
    env = {**tiny_dataset.env(tmp_path / "r"), "nnUNet_raw": str(raw)}
    out = _refused(["--methods", "baseline", "spcon-phase", "--schedule", "smoke"], env, tmp_path / "work")
    assert "method 'spcon-phase' needs the meta-label(s) ['phase']" in out and str(meta_file) in out
