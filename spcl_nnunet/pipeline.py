"""Runs the real nnU-Net commands of an SP-Con experiment (used by the demo and the quality run).

Each step is a subprocess of nnU-Net's own CLI (``nnUNetv2_plan_and_preprocess``,
``nnUNetv2_train``, ``nnUNetv2_predict``) with its output streamed, so progress is visible and
every result lands in nnU-Net's usual folders; evaluation is nnU-Net's
``compute_metrics_on_folder`` (3D Dice per class on whole scans).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spcl_nnunet.environment import NNUNET_FOLDERS, trainers_dir


def experiment_environment(workdir: Path, device: str) -> dict[str, str]:
    """os.environ plus what nnU-Net needs: data folders under ``workdir`` when unset, our
    trainers on ``nnUNet_extTrainer``, and CPU-friendly worker counts when on the CPU."""
    env = dict(os.environ)
    for name in NNUNET_FOLDERS:
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


def run_command(cmd: list[str], env: dict[str, str], log_file: Path | None = None) -> float:
    """Run ``cmd``, streaming its output (and copying it to ``log_file``); raise on failure."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        sink = open(log_file, "a") if log_file else None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                if sink:
                    sink.write(line)
        finally:
            if sink:
                sink.close()
        code = proc.wait()
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


def prepare_synthetic(env: dict[str, str], dataset_id: int, seed: int, n_patients: int, log: Path) -> Dataset:
    """Synthetic raw dataset -> nnU-Net 2d plan + preprocessing -> sidecars next to it.
    Steps already done (same dataset id) are reused."""
    from spcl_nnunet.synthetic import DATASET_NAME, generate_synthetic_dataset

    ds = dataset_paths(env, dataset_id, DATASET_NAME)
    if ds.raw.is_dir():
        print(f"reusing the synthetic dataset in {ds.raw}")
    else:
        generate_synthetic_dataset(env["nnUNet_raw"], dataset_id, n_patients=n_patients, seed=seed)
        print(f"wrote {ds.raw}")
    if (ds.preprocessed / "nnUNetPlans.json").is_file() and (ds.preprocessed / "nnUNetPlans_2d").is_dir():
        print(f"reusing nnU-Net's preprocessed data in {ds.preprocessed}")
    else:
        run_command(["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", "2d", "-np", "1",
                     "--verify_dataset_integrity"], env, log)
    run_command(["spcl_nnunet", "prepare", "-d", str(dataset_id)], env, log)
    return ds


def train(env: dict[str, str], ds: Dataset, fold: int, trainer: str, device: str, log: Path,
          pretrained: Path | None = None) -> Path:
    """``nnUNetv2_train ID 2d FOLD -tr TRAINER`` (a finished run is reused); returns checkpoint_final.pth."""
    out = ds.results / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"
    final = out / "checkpoint_final.pth"
    if final.is_file() and (out / "validation" / "summary.json").is_file() or \
            final.is_file() and trainer.startswith("SPConPretrain"):
        print(f"reusing the finished training in {out}")
        return final
    cmd = ["nnUNetv2_train", str(ds.dataset_id), "2d", str(fold), "-tr", trainer, "-device", device]
    if pretrained is not None:
        cmd += ["-pretrained_weights", str(pretrained)]
    run_command(cmd, env, log)
    return final


def predict_test_set(env: dict[str, str], ds: Dataset, fold: int, trainer: str, device: str, output: Path,
                     log: Path) -> Path:
    if output.exists():
        shutil.rmtree(output)
    run_command(["nnUNetv2_predict", "-i", str(ds.raw / "imagesTs"), "-o", str(output), "-d", str(ds.dataset_id),
                 "-c", "2d", "-f", str(fold), "-tr", trainer, "-device", device, "-npp", "1", "-nps", "1",
                 "--disable_progress_bar"], env, log)
    return output


def evaluate_test_set(ds: Dataset, predictions: Path) -> dict[str, float]:
    """nnU-Net's evaluation (3D Dice per foreground class and their mean) against labelsTs."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    dataset_json = json.loads((ds.raw / "dataset.json").read_text())
    labels = {int(v): k for k, v in dataset_json["labels"].items() if int(v) != 0}
    metrics = compute_metrics_on_folder(str(ds.raw / "labelsTs"), str(predictions), str(predictions / "summary.json"),
                                        SimpleITKIO(), dataset_json["file_ending"], sorted(labels), None,
                                        num_processes=1, chill=False)
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
