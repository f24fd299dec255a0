"""Runs the real nnU-Net commands of an SP-Con experiment (used by the demo and the quality run).

Each step is a subprocess of nnU-Net's own CLI (``nnUNetv2_plan_and_preprocess``,
``nnUNetv2_train``, ``nnUNetv2_predict``) with its output streamed, so progress is visible and
every result lands in nnU-Net's usual folders; evaluation is nnU-Net's
``compute_metrics_on_folder`` (3D Dice per class on whole scans).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spcl_nnunet.data.environment import NNUNET_FOLDERS, trainers_dir
from spcl_nnunet.training.schedules import Schedule, active_schedule


def experiment_environment(workdir: Path, device: str, folders: tuple[str, ...] = NNUNET_FOLDERS) -> dict[str, str]:
    """os.environ plus what nnU-Net needs: the data ``folders`` under ``workdir`` when unset, our
    trainers on ``nnUNet_extTrainer``, and CPU-friendly worker counts when on the CPU."""
    env = dict(os.environ)
    for name in folders:
        if not env.get(name):
            env[name] = str((workdir / name).resolve())
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    existing = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    ours = str(trainers_dir())
    env["nnUNet_extTrainer"] = os.pathsep.join([ours] + [p for p in existing if p != ours])
    if device == "cpu":
        env.setdefault("nnUNet_n_proc_DA", "2")
        env.setdefault("nnUNet_def_n_proc", "1")
        env.setdefault("nnUNet_compile", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def resolve_device(device: str) -> str:
    if device != "auto":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError("--device cuda was asked for but torch sees no CUDA device")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def banner(text: str) -> None:
    print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), read from Linux's /proc;
    empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def terminate_running_commands() -> None:
    """SIGTERM to every command ``run_command`` is running and to the processes they started
    (nnU-Net's data-augmentation workers), so that a caller can stop cleanly."""
    with _RUNNING_LOCK:
        running = [proc for proc in _RUNNING if proc.poll() is None]
    for proc in running:
        for pid in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def run_command(cmd: list[str], env: dict[str, str], log_file: Path | None = None, echo: bool = True) -> float:
    """Run ``cmd``, streaming its output to stdout (unless ``echo`` is False) and appending it,
    after the command line, to ``log_file``; raise on failure. Without ``echo`` the output goes
    straight into the log file (no pipe a left-over worker process could hold open)."""
    if echo:
        print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(log_file, "a")) if log_file else None
        if sink:
            sink.write(f"$ {' '.join(cmd)}\n")
            sink.flush()
        output = subprocess.PIPE if echo else (sink or subprocess.DEVNULL)
        proc = stack.enter_context(subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                                    text=True, bufsize=1 if echo else -1))
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        try:
            if echo:
                for line in proc.stdout:
                    sys.stdout.write(line)
                    if sink:
                        sink.write(line)
            code = proc.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
    if code != 0:
        raise RuntimeError(f"command failed with exit code {code}: {' '.join(cmd)}"
                           + (f" (output in {log_file})" if log_file else ""))
    return time.time() - start


@dataclass
class Dataset:
    dataset_id: int
    name: str
    raw: Path
    preprocessed: Path
    results: Path


def dataset_paths(env: dict[str, str], dataset_id: int, name: str) -> Dataset:
    folder = f"Dataset{dataset_id:03d}_{name}"
    return Dataset(dataset_id, folder, Path(env["nnUNet_raw"]) / folder, Path(env["nnUNet_preprocessed"]) / folder,
                   Path(env["nnUNet_results"]) / folder)


def prepare_synthetic(env: dict[str, str], dataset_id: int, seed: int, n_patients: int, log: Path,
                      image_size: tuple[int, int] | None = None) -> Dataset:
    """Synthetic raw dataset (``image_size``: None = the profile's) -> nnU-Net 2d plan +
    preprocessing -> sidecars next to it. Steps already done (same dataset id) are reused."""
    from spcl_nnunet.synthetic import DATASET_NAME, generate_synthetic_dataset

    ds = dataset_paths(env, dataset_id, DATASET_NAME)
    if ds.raw.is_dir():
        print(f"reusing the synthetic dataset in {ds.raw}")
    else:
        generate_synthetic_dataset(env["nnUNet_raw"], dataset_id, n_patients=n_patients, seed=seed,
                                   image_size=image_size)
        print(f"wrote {ds.raw}")
    if (ds.preprocessed / "nnUNetPlans.json").is_file() and (ds.preprocessed / "nnUNetPlans_2d").is_dir():
        print(f"reusing nnU-Net's preprocessed data in {ds.preprocessed}")
    else:
        run_command(["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", "2d", "-np", "1",
                     "--verify_dataset_integrity"], env, log)
    run_command(["spcl_nnunet", "prepare", "-d", str(dataset_id)], env, log)
    return ds


def training_folder(results: Path, trainer: str, fold: int) -> Path:
    """nnU-Net's output folder of a 2d training under a dataset's results folder."""
    return results / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"


def is_pretrainer(trainer: str) -> bool:
    """Contrastive pre-training trainers have no segmentation head: no final validation."""
    return "PretrainTrainer" in trainer


def validates_after_training(trainer: str, schedule: Schedule | None) -> bool:
    """Whether nnU-Net's final validation follows the training of ``trainer`` (of this package)
    under ``schedule``: not for pre-trainers, nor where ``final_validation`` (class attribute or
    schedule override) is False."""
    if is_pretrainer(trainer):
        return False
    from spcl_nnunet.experiment.methods import trainer_class
    from spcl_nnunet.training.base import schedule_overrides

    cls = trainer_class(trainer)
    applied = schedule_overrides(cls, schedule)[0] if schedule is not None else {}
    return bool(applied.get("final_validation", cls.final_validation))


def training_state(output_folder: Path, validated: bool) -> str:
    """``finished`` (checkpoint_final.pth, and where the trainer validates after training,
    nnU-Net's final validation ``validation/summary.json``), ``validate`` (final checkpoint without
    the validation), ``interrupted`` (a checkpoint_latest.pth to resume with ``--c``) or ``new``."""
    final = (output_folder / "checkpoint_final.pth").is_file()
    if final and (not validated or (output_folder / "validation" / "summary.json").is_file()):
        return "finished"
    if final:
        return "validate"
    return "interrupted" if (output_folder / "checkpoint_latest.pth").is_file() else "new"


def train_command(dataset_id: int, fold: int, trainer: str, device: str, state: str,
                  pretrained: Path | None = None) -> list[str]:
    """``nnUNetv2_train`` for a training in ``state``: resumed with ``--c`` (nnU-Net refuses
    ``-pretrained_weights`` with it: the weights are in the checkpoint), only validated with
    ``--val``, or started (from ``pretrained`` when given)."""
    cmd = ["nnUNetv2_train", str(dataset_id), "2d", str(fold), "-tr", trainer, "-device", device]
    if state == "interrupted":
        return cmd + ["--c"]
    if state == "validate":
        return cmd + ["--val"]
    if state == "new":
        return cmd + (["-pretrained_weights", str(pretrained)] if pretrained is not None else [])
    raise ValueError(f"no training command for a training in state {state!r}")


def train(env: dict[str, str], ds: Dataset, fold: int, trainer: str, device: str, log: Path,
          pretrained: Path | None = None) -> Path:
    """``nnUNetv2_train ID 2d FOLD -tr TRAINER`` (a finished run is reused, an interrupted one
    resumed with ``--c``); returns checkpoint_final.pth."""
    out = training_folder(ds.results, trainer, fold)
    state = training_state(out, validated=validates_after_training(trainer, active_schedule(env)))
    if state == "finished":
        print(f"reusing the finished training in {out}")
        return out / "checkpoint_final.pth"
    if state != "new":
        print(f"resuming the training in {out} ({'--c' if state == 'interrupted' else '--val'})")
    run_command(train_command(ds.dataset_id, fold, trainer, device, state, pretrained), env, log)
    return out / "checkpoint_final.pth"


def predict_test_set(env: dict[str, str], ds: Dataset, fold: int, trainer: str, device: str, output: Path,
                     log: Path, images: Path | None = None, echo: bool = True) -> Path:
    """``nnUNetv2_predict`` of ``images`` (default: the raw dataset's imagesTs) into ``output``.
    On a GPU one preprocessing and one export worker overlap with the network; on the CPU they
    would share its cores, so nnU-Net's sequential mode runs (``-npp 0 -nps 0``: no worker
    processes, each of which costs a new interpreter)."""
    if output.exists():
        shutil.rmtree(output)
    workers = "0" if device == "cpu" else "1"
    run_command(["nnUNetv2_predict", "-i", str(images or ds.raw / "imagesTs"), "-o", str(output),
                 "-d", str(ds.dataset_id), "-c", "2d", "-f", str(fold), "-tr", trainer, "-device", device,
                 "-npp", workers, "-nps", workers, "--disable_progress_bar"], env, log, echo=echo)
    return output


def foreground_labels(dataset_json: dict) -> dict[int, str]:
    """``{label value: name}`` of the foreground classes in a dataset.json."""
    return {int(v): k for k, v in dataset_json["labels"].items() if int(v) != 0}


def evaluate_folder(dataset_json: dict, labels_folder: Path, predictions: Path) -> dict:
    """nnU-Net's ``compute_metrics_on_folder`` (per case and class, their means) of every case of
    ``labels_folder`` (each must be predicted); writes ``predictions/summary.json``."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    labels = sorted(foreground_labels(dataset_json))
    return compute_metrics_on_folder(str(labels_folder), str(predictions), str(predictions / "summary.json"),
                                     SimpleITKIO(), dataset_json["file_ending"], labels, None, num_processes=1,
                                     chill=False)


def evaluate_test_set(ds: Dataset, predictions: Path) -> dict[str, float]:
    """nnU-Net's evaluation (3D Dice per foreground class and their mean) against labelsTs."""
    dataset_json = json.loads((ds.raw / "dataset.json").read_text())
    labels = foreground_labels(dataset_json)
    metrics = evaluate_folder(dataset_json, ds.raw / "labelsTs", predictions)
    scores = {labels[int(k)]: float(v["Dice"]) for k, v in metrics["mean"].items()}
    scores["mean"] = float(metrics["foreground_mean"]["Dice"])
    return scores


def markdown_table(rows: dict[str, dict[str, str | float]]) -> str:
    """``{row name: {column: value}}`` as a Markdown table (floats as Dice %)."""
    columns = list(next(iter(rows.values())).keys())
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, values in rows.items():
        cells = [f"{100 * v:.2f}" if isinstance(v, float) else str(v) for v in values.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dice_summary_table(scores: dict[str, dict[int, dict[str, float]]], folds: list[int]) -> str:
    """Markdown table of 3D Dice (%): one row per method, the per-fold mean over classes, then
    mean ± std over folds of each class and of the mean (``scores[method][fold][class]``)."""
    import numpy as np

    methods = list(scores)
    classes = list(scores[methods[0]][folds[0]].keys())
    lines = ["| method | " + " | ".join(f"fold {f}" for f in folds) + " | " +
             " | ".join(f"{c} mean ± std" for c in classes) + " |",
             "|---|" + "---|" * (len(folds) + len(classes))]
    for method in methods:
        per_fold = [f"{100 * scores[method][f]['mean']:.2f}" for f in folds]
        stats = []
        for c in classes:
            values = np.array([scores[method][f][c] for f in folds]) * 100
            stats.append(f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}")
        lines.append(f"| {method} | " + " | ".join(per_fold) + " | " + " | ".join(stats) + " |")
    return "\n".join(lines)
