"""Quality run: SP-Con (pre-train, and + Mean Teacher) vs the baseline and the semi-supervised
comparisons, 1 labeled scan, 3 runs.

    python benchmarks/quality_run.py [--workdir quality_runs] [--device auto] [--folds 0 1 2]
                                     [--methods baseline spcon-pretrain mean-teacher spcon-mt entmin]

On the synthetic dataset (default 16 patients, seed 0): one SP-Con pre-training (its pool, every
training scan but the validation scans, is the same for every fold) with
``SPConPretrainTrainer_quality``, then for each of folds 0, 1, 2 (1 labeled scan each, three
random labeled splits) ``SPConFinetuneTrainer_quality`` from the pre-trained weights,
``SPConBaselineTrainer_quality`` from scratch, and the semi-supervised trainers on the same
schedule (700 iterations at labeled batch 8, plus 6 unlabeled slices per iteration from the
unlabeled pool): ``MeanTeacherTrainer_quality``, ``SPConMeanTeacherTrainer_quality`` (Eq. 15,
from scratch) and ``EntropyMinTrainer_quality``; ``nnUNetv2_predict`` on the 6 test scans and
nnU-Net's evaluation. Trainings already finished in the workdir are reused. Prints per-run and
mean ± std 3D Dice, writes quality_results.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from spcl_nnunet.experiment.pipeline import (banner, dice_summary_table, evaluate_test_set, experiment_environment, predict_test_set,
                                  prepare_synthetic, resolve_device, train)

PRETRAINER = "SPConPretrainTrainer_quality"
# --methods name: (row of the table, trainer)
METHODS = {"baseline": ("baseline (scratch)", "SPConBaselineTrainer_quality"),
           "spcon-pretrain": ("SP-Con pre-train + fine-tune", "SPConFinetuneTrainer_quality"),
           "mean-teacher": ("Mean Teacher", "MeanTeacherTrainer_quality"),
           "spcon-mt": ("SP-Con + Mean Teacher (Eq. 15)", "SPConMeanTeacherTrainer_quality"),
           "entmin": ("entropy minimisation", "EntropyMinTrainer_quality")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="quality_runs")
    parser.add_argument("-d", type=int, default=902, help="dataset id")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    args = parser.parse_args()
    methods = {METHODS[m][0]: METHODS[m][1] for m in args.methods}

    start = time.time()
    device = resolve_device(args.device)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = experiment_environment(workdir, device)
    log = workdir / "commands.log"
    ds = prepare_synthetic(env, args.d, args.seed, 16, log)
    pretrained = None
    if "spcon-pretrain" in args.methods:
        banner(f"SP-Con pre-training ({PRETRAINER})")
        pretrained = train(env, ds, args.folds[0], PRETRAINER, device, log)

    scores: dict[str, dict[int, dict[str, float]]] = {m: {} for m in methods}
    for fold in args.folds:
        for method, trainer in methods.items():
            banner(f"fold {fold}: {method} ({trainer})")
            train(env, ds, fold, trainer, device, log,
                  pretrained=pretrained if trainer.startswith("SPConFinetune") else None)
            out = predict_test_set(env, ds, fold, trainer, device, workdir / "predictions" / f"{trainer}_fold{fold}",
                                   log)
            scores[method][fold] = evaluate_test_set(ds, out)
            print(f"fold {fold} {method}: {scores[method][fold]}")

    table = dice_summary_table(scores, args.folds)
    minutes = (time.time() - start) / 60
    (workdir / "quality_results.json").write_text(json.dumps({"device": device, "folds": args.folds,
                                                              "dice": scores, "minutes": minutes}, indent=2))
    (workdir / "quality_results.md").write_text(table + "\n")
    print(f"\n3D Dice (%) on the test scans; per-fold columns are the mean over classes:\n\n{table}\n\n"
          f"total time {minutes:.1f} min on {device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
