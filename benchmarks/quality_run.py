"""Quality run: SP-Con pre-train + fine-tune vs the scratch baseline, 1 labeled scan, 3 runs.

    python benchmarks/quality_run.py [--workdir quality_runs] [--device auto] [--folds 0 1 2]

On the synthetic dataset (default 16 patients, seed 0): one SP-Con pre-training (its pool, every
training scan but the validation scans, is the same for every fold) with
``SPConPretrainTrainer_quality``, then for each of folds 0, 1, 2 (1 labeled scan each, three
random labeled splits) ``SPConFinetuneTrainer_quality`` from the pre-trained weights and
``SPConBaselineTrainer_quality`` from scratch; ``nnUNetv2_predict`` on the 6 test scans and
nnU-Net's evaluation. Prints per-run and mean ± std 3D Dice, writes quality_results.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spcl_nnunet.pipeline import (banner, evaluate_test_set, experiment_environment, predict_test_set,
                                  prepare_synthetic, resolve_device, train)

PRETRAINER = "SPConPretrainTrainer_quality"
METHODS = {"baseline (scratch)": "SPConBaselineTrainer_quality",
           "SP-Con pre-train + fine-tune": "SPConFinetuneTrainer_quality"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="quality_runs")
    parser.add_argument("-d", type=int, default=902, help="dataset id")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    args = parser.parse_args()

    start = time.time()
    device = resolve_device(args.device)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = experiment_environment(workdir, device)
    log = workdir / "commands.log"
    ds = prepare_synthetic(env, args.d, args.seed, 16, log)
    banner(f"SP-Con pre-training ({PRETRAINER})")
    pretrained = train(env, ds, args.folds[0], PRETRAINER, device, log)

    scores: dict[str, dict[int, dict[str, float]]] = {m: {} for m in METHODS}
    for fold in args.folds:
        for method, trainer in METHODS.items():
            banner(f"fold {fold}: {method} ({trainer})")
            train(env, ds, fold, trainer, device, log,
                  pretrained=pretrained if trainer.startswith("SPConFinetune") else None)
            out = predict_test_set(env, ds, fold, trainer, device, workdir / "predictions" / f"{trainer}_fold{fold}",
                                   log)
            scores[method][fold] = evaluate_test_set(ds, out)
            print(f"fold {fold} {method}: {scores[method][fold]}")

    classes = list(next(iter(scores[next(iter(METHODS))].values())).keys())
    lines = ["| method | " + " | ".join(f"fold {f}" for f in args.folds) + " | " +
             " | ".join(f"{c} mean ± std" for c in classes) + " |",
             "|---|" + "---|" * (len(args.folds) + len(classes))]
    for method in METHODS:
        per_fold = [f"{100 * scores[method][f]['mean']:.2f}" for f in args.folds]
        stats = []
        for c in classes:
            values = np.array([scores[method][f][c] for f in args.folds]) * 100
            stats.append(f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}")
        lines.append(f"| {method} | " + " | ".join(per_fold) + " | " + " | ".join(stats) + " |")
    table = "\n".join(lines)
    minutes = (time.time() - start) / 60
    (workdir / "quality_results.json").write_text(json.dumps({"device": device, "folds": args.folds,
                                                              "dice": scores, "minutes": minutes}, indent=2))
    (workdir / "quality_results.md").write_text(table + "\n")
    print(f"\n3D Dice (%) on the test scans; per-fold columns are the mean over classes:\n\n{table}\n\n"
          f"total time {minutes:.1f} min on {device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
