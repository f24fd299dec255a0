"""``spcl_nnunet demo``: the whole SP-Con workflow on the embedded synthetic dataset.

synthetic dataset -> nnUNetv2_plan_and_preprocess (2d) -> SP-Con pre-training -> fine-tuning on
one labeled scan, and the scratch baseline on the same scan -> nnUNetv2_predict on the test
scans -> nnU-Net's evaluation -> a table of 3D Dice per class, baseline vs SP-Con.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from spcl_nnunet.experiment.pipeline import (banner, evaluate_test_set, experiment_environment, markdown_table,
                                  predict_test_set, prepare_synthetic, resolve_device, train)
from spcl_nnunet.training.schedules import SCHEDULES

PRETRAINER = "SPConPretrainTrainer_demo"
FINETUNER = "SPConFinetuneTrainer_demo"
BASELINE = "SPConBaselineTrainer_demo"
# the default profile's anatomy at 64 x 64 px instead of 96 x 96: a plan that trains about twice as fast
# on the CPU, so that 300 fine-tuning iterations at batch 8 fit the demo's 10 minutes
IMAGE_SIZE = (64, 64)


def schedule_iterations(role: str) -> int:
    """Training iterations of the demo's trainers of ``role`` (the ``demo`` schedule equals them)."""
    overrides = SCHEDULES["demo"].role_overrides(role)[-1][1]
    return int(overrides["num_epochs_default"]) * int(overrides["iterations_per_epoch"])


def spread_note(difference: float) -> str:
    """How to read one demo run's SP-Con - baseline difference (a fraction of Dice)."""
    return (f"SP-Con - baseline: {100 * difference:+.1f} Dice points in this run. At this short budget "
            f"({schedule_iterations('pretrain')} pre-training + {schedule_iterations('finetune')} fine-tuning "
            f"iterations on the CPU) one run's result swings by several Dice points from run to run for either method "
            f"(benchmarks/README.md, 'Demo runs'): one run is not a verdict. The comparison with the power to "
            f"decide, over splits with confidence intervals, is in docs/results.md; for a measurement on your "
            f"own data use 'spcl_nnunet experiment' (docs/experiments.md).\n")


def run_demo(workdir: Path, dataset_id: int = 901, device: str = "auto", seed: int = 0, fold: int = 0,
             n_patients: int = 16) -> int:
    start = time.time()
    device = resolve_device(device)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = experiment_environment(workdir, device)
    log = workdir / "demo_commands.log"
    print(f"spcl_nnunet demo: device {device}, working folder {workdir}\n"
          f"nnU-Net folders: {env['nnUNet_raw']}, {env['nnUNet_preprocessed']}, {env['nnUNet_results']}")

    banner(f"1/6 synthetic cardiac cine-MRI dataset ({IMAGE_SIZE[0]} x {IMAGE_SIZE[1]} px), nnU-Net 2d planning "
           f"and preprocessing")
    ds = prepare_synthetic(env, dataset_id, seed, n_patients, log, image_size=IMAGE_SIZE)

    banner("2/6 SP-Con pre-training of the encoder (slice-position meta-label)")
    pretrained = train(env, ds, fold, PRETRAINER, device, log)

    banner(f"3/6 fine-tuning the pre-trained network on fold {fold}'s labeled scan")
    train(env, ds, fold, FINETUNER, device, log, pretrained=pretrained)

    banner("4/6 baseline: the same network trained from scratch on the same scan")
    train(env, ds, fold, BASELINE, device, log)

    banner("5/6 nnUNetv2_predict on the test scans")
    predictions = {}
    for label, trainer in (("baseline (scratch)", BASELINE), ("SP-Con pre-train + fine-tune", FINETUNER)):
        predictions[label] = predict_test_set(env, ds, fold, trainer, device,
                                              workdir / "predictions" / trainer, log)

    banner("6/6 nnU-Net evaluation: 3D Dice on the test scans")
    rows = {label: evaluate_test_set(ds, folder) for label, folder in predictions.items()}
    table = markdown_table(rows)
    minutes = (time.time() - start) / 60
    (workdir / "demo_results.json").write_text(json.dumps({"fold": fold, "device": device, "dice": rows,
                                                           "minutes": minutes}, indent=2))
    note = spread_note(rows["SP-Con pre-train + fine-tune"]["mean"] - rows["baseline (scratch)"]["mean"])
    (workdir / "demo_results.md").write_text(table + "\n\n" + note)
    print(f"\n3D Dice (%) on the {len(list((ds.raw / 'labelsTs').glob('*.nii.gz')))} test scans, "
          f"fold {fold} (1 labeled scan):\n\n{table}\n")
    print(note)
    pre_dir = pretrained.parent
    print(f"pre-training:  {pre_dir} (progress.png, self_paced_weights/*.png, checkpoint_final.pth)")
    print(f"fine-tuned:    {ds.results / (FINETUNER + '__nnUNetPlans__2d') / f'fold_{fold}'}")
    print(f"baseline:      {ds.results / (BASELINE + '__nnUNetPlans__2d') / f'fold_{fold}'}")
    print(f"predictions:   {workdir / 'predictions'} (summary.json per method)")
    print(f"table:         {workdir / 'demo_results.md'}   total time {minutes:.1f} min")
    return 0
