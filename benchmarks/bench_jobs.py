"""``spcl_nnunet experiment --jobs 2`` against ``--jobs 1`` on this machine's CPU.

    .venv/bin/python benchmarks/bench_jobs.py [--repeats 2] [--jobs 2] [--keep DIR]

The same experiment (the scratch baseline on both folds of a tiny synthetic dataset, 48 x 48 px,
6 patients; smoke schedule: per fold a 4-epoch ``nnUNetv2_train`` with nnU-Net's final
validation, ``nnUNetv2_predict`` of the 2 test scans and nnU-Net's evaluation) runs with one job
and with ``--jobs N``, each in a fresh working folder, the two alternated ``--repeats`` times so
that both see the same load. Planning and preprocessing run once before (not timed). Prints the
wall time of every run and the ratio (one job) / (N jobs): above 1, the jobs gain. With N jobs on
the CPU the experiment binds each job to its share of the cores, with ``OMP_NUM_THREADS`` set to
the share and ``OMP_WAIT_POLICY=PASSIVE`` (``spcl_nnunet.experiment.commands``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spcl_nnunet.experiment.commands import nnunet_environment, run_command, usable_cores

DATASET_ID = 997


def experiment(root: Path, env: dict[str, str], jobs: int, name: str) -> tuple[float, float]:
    """(wall seconds, mean Dice over the runs) of one experiment with ``jobs`` jobs."""
    workdir = root / name
    cmd = [str(Path(sys.executable).parent / "spcl_nnunet"), "experiment", "-d", str(DATASET_ID),
           "--methods", "baseline", "--folds", "0", "1", "--schedule", "smoke", "--device", "cpu",
           "--jobs", str(jobs), "--workdir", str(workdir)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")
    runs = json.loads((workdir / "results.json").read_text())["runs"]
    return seconds, sum(r["mean_dice"] for r in runs) / len(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs (one job, N jobs), alternated")
    parser.add_argument("--jobs", type=int, default=2, help="N")
    parser.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    from spcl_nnunet.synthetic import generate_synthetic_dataset

    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench_jobs_"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["nnUNet_raw"], os.environ["nnUNet_preprocessed"] = str(root / "raw"), str(root / "preprocessed")
    env = nnunet_environment(root, "cpu", folders=("nnUNet_raw", "nnUNet_preprocessed"))
    try:
        if not any((root / "raw").glob(f"Dataset{DATASET_ID}_*")):
            generate_synthetic_dataset(root / "raw", DATASET_ID, n_patients=6, n_val_patients=1, n_test_patients=1,
                                       image_size=(48, 48), slices=(6, 8), labeled_counts=(1, 2), repeats=1)
        run_command(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"],
                    {**env, "nnUNet_results": str(root / "unused")}, root / "plan_and_preprocess.log")
        threads = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "MKL_"))}
        print(f"{len(usable_cores())} usable cores, load average {os.getloadavg()[0]:.2f}; OpenMP variables set by the "
              f"caller: {threads or 'none'}")
        times: dict[int, list[float]] = {1: [], args.jobs: []}
        ratios = []
        for repeat in range(args.repeats):
            order = (1, args.jobs) if repeat % 2 == 0 else (args.jobs, 1)
            pair = {}
            for jobs in order:
                seconds, dice = experiment(root, env, jobs, f"jobs{jobs}_{repeat}")
                pair[jobs] = seconds
                times[jobs].append(seconds)
                print(f"repeat {repeat}: --jobs {jobs}: {seconds:6.1f} s (mean Dice {100 * dice:.1f} %)", flush=True)
            ratios.append(pair[1] / pair[args.jobs])
            print(f"repeat {repeat}: ratio --jobs 1 / --jobs {args.jobs} = {ratios[-1]:.2f}", flush=True)
        mean = {jobs: sum(values) / len(values) for jobs, values in times.items()}
        print(f"\nmean wall time: --jobs 1 {mean[1]:.1f} s, --jobs {args.jobs} {mean[args.jobs]:.1f} s; ratio "
              f"{mean[1] / mean[args.jobs]:.2f} (per pair: {', '.join(f'{r:.2f}' for r in ratios)}); load average "
              f"after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
