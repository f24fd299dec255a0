"""``spcl_nnunet demo``: the whole SP-Con workflow on the embedded synthetic dataset.

The demo is an experiment (``spcl_nnunet experiment``'s runner) with the ``demo`` schedule in its
own working folder: the synthetic dataset -> nnUNetv2_plan_and_preprocess (2d) -> SP-Con
pre-training -> fine-tuning on fold 0's one labeled scan, and the scratch baseline on the same
scan -> nnUNetv2_predict on the test scans -> nnU-Net's evaluation -> a table of 3D Dice per class,
baseline vs SP-Con. Finished steps are reused when it runs again in the same folder.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from spcl_nnunet.data.splits import FoldSpec
from spcl_nnunet.experiment.commands import data_folder
from spcl_nnunet.experiment.files import run_folder
from spcl_nnunet.experiment.methods import Method, get_methods
from spcl_nnunet.experiment.plan import ExperimentConfig, make_plan
from spcl_nnunet.experiment.records import load_records
from spcl_nnunet.experiment.results import dice_table
from spcl_nnunet.experiment.runner import Runner
from spcl_nnunet.training.schedules import SCHEDULES

SCHEDULE = "demo"
METHODS = ("spcon", "baseline")     # run in this order (one job): the pre-training, SP-Con, the baseline
# the default profile's anatomy at 64 x 64 px instead of 96 x 96: a plan that trains about twice as fast
# on the CPU, so that 300 fine-tuning iterations at batch 8 fit the demo's 10 minutes
IMAGE_SIZE = (64, 64)
STEPS = 6


def banner(step: int, text: str) -> None:
    print(f"\n{'=' * 78}\n== {step}/{STEPS} {text}\n{'=' * 78}", flush=True)


def schedule_iterations(role: str) -> int:
    """Training iterations of the demo's trainers of ``role`` under the ``demo`` schedule."""
    overrides = SCHEDULES[SCHEDULE].role_overrides(role)[-1][1]
    return int(overrides["num_epochs_default"]) * int(overrides["iterations_per_epoch"])


def spread_note(difference: float) -> str:
    """How to read one demo run's SP-Con - baseline difference (a fraction of Dice)."""
    return (f"SP-Con - baseline: {100 * difference:+.1f} Dice points in this run. At this short budget "
            f"({schedule_iterations('pretrain')} pre-training + {schedule_iterations('finetune')} fine-tuning "
            f"iterations on the CPU) one run's result swings by several Dice points from run to run for either method "
            f"(benchmarks/README.md, 'Demo runs'): one run is not a verdict. The comparison with the power to "
            f"decide, over splits with confidence intervals, is in docs/results.md; for a measurement on your "
            f"own data use 'spcl_nnunet experiment' (docs/experiments.md).\n")


class DemoRunner(Runner):
    """The experiment runner, with the demo's numbered steps printed as it reaches them (one job:
    the plan and preprocessing, the pre-training, then the runs in the order of ``METHODS``)."""

    def prepare(self) -> None:
        banner(2, "nnU-Net 2d planning and preprocessing (reused when done)")
        super().prepare()

    def pretrain(self, trainer: str, fold: int, start_from: Future | None = None) -> Path:
        banner(3, f"SP-Con pre-training of the encoder (slice-position meta-label): {trainer}")
        return super().pretrain(trainer, fold, start_from)

    def run(self, method: Method, spec: FoldSpec, pretraining: Future | None) -> dict[str, Any]:
        scan = f"fold {spec.fold}'s labeled scan" if len(spec.labeled) == 1 else f"fold {spec.fold}'s labeled scans"
        if method.pretrainer:
            what = f"fine-tuning the pre-trained network on {scan} ({method.trainer})"
        else:
            what = f"baseline: the same network trained from scratch on {scan} ({method.trainer})"
        banner(4 if method.pretrainer else 5, f"{what}, then nnUNetv2_predict on the test scans and nnU-Net's "
                                              f"evaluation")
        return super().run(method, spec, pretraining)

    def write_tables(self, echo: bool = True) -> list[Path]:
        return super().write_tables(echo=False)       # the demo prints its own table


def synthetic_dataset(raw_root: Path, dataset_id: int, seed: int, n_patients: int) -> Path:
    """The demo's synthetic raw dataset under ``raw_root``, written unless it is there."""
    from spcl_nnunet.synthetic import DATASET_NAME, generate_synthetic_dataset

    folder = raw_root / f"Dataset{dataset_id:03d}_{DATASET_NAME}"
    if folder.is_dir():
        print(f"reusing the synthetic dataset in {folder}")
        return folder
    generate_synthetic_dataset(raw_root, dataset_id, n_patients=n_patients, seed=seed, image_size=IMAGE_SIZE)
    print(f"wrote {folder}")
    return folder


def run_demo(workdir: Path, dataset_id: int = 901, device: str = "auto", seed: int = 0, fold: int = 0,
             n_patients: int = 16) -> int:
    start = time.time()
    workdir = workdir.resolve()
    raw_root, pre_root = data_folder("nnUNet_raw", workdir), data_folder("nnUNet_preprocessed", workdir)
    print(f"spcl_nnunet demo: working folder {workdir}\n"
          f"nnU-Net folders: {raw_root}, {pre_root}; nnUNet_results of each training under {workdir / 'pretraining'} "
          f"and {workdir / 'runs'}")
    banner(1, f"synthetic cardiac cine-MRI dataset ({IMAGE_SIZE[0]} x {IMAGE_SIZE[1]} px)")
    synthetic_dataset(raw_root, dataset_id, seed, n_patients)
    config = ExperimentConfig(dataset_id=dataset_id, methods=get_methods(METHODS), schedule=SCHEDULES[SCHEDULE],
                              workdir=workdir, folds=[fold], device=device, jobs=1, evaluate="test")
    plan = make_plan(config)
    print(f"device {plan.device}; the steps' nnU-Net output goes to the logs named below")
    code = DemoRunner(plan).execute()
    if code != 0:
        return code

    banner(6, "3D Dice on the test scans (nnU-Net's evaluation)")
    records = {r["method"]: r for r in load_records(workdir, "test") if r["fold"] == fold and r["method"] in METHODS}
    rows = [records[name] for name in ("baseline", "spcon")]
    table = dice_table(rows)
    minutes = (time.time() - start) / 60
    (workdir / "demo_results.json").write_text(json.dumps(
        {"fold": fold, "device": plan.device, "minutes": minutes,
         "dice": {r["label"]: {**r["dice"], "mean": r["mean_dice"]} for r in rows}}, indent=2))
    note = spread_note(records["spcon"]["mean_dice"] - records["baseline"]["mean_dice"])
    (workdir / "demo_results.md").write_text(table + "\n\n" + note)
    labeled = len(plan.folds[0].labeled)
    print(f"\n3D Dice (%) on the {len(plan.table.test)} test scans, fold {fold} ({labeled} labeled "
          f"scan{'s' if labeled != 1 else ''}):\n\n{table}\n")
    print(note)
    print(f"pre-training:  {Path(records['spcon']['pretrained_weights']).parent} (progress.png, "
          f"self_paced_weights/*.png, checkpoint_final.pth)")
    print(f"fine-tuned:    {Path(records['spcon']['checkpoint']['path']).parent}")
    print(f"baseline:      {Path(records['baseline']['checkpoint']['path']).parent}")
    print(f"predictions:   {run_folder(workdir, '<method>', fold) / 'test_predictions'} (summary.json per method)")
    print(f"table:         {workdir / 'demo_results.md'}   total time {minutes:.1f} min")
    return 0
