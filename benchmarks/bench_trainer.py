"""Seconds per iteration of SP-Con pre-training against nnU-Net's stock trainer, one run.

Builds a small workspace (synthetic dataset -> ``nnUNetv2_plan_and_preprocess -c 2d`` ->
``spcl_nnunet prepare``), then constructs, in this process, ``SPConPretrainTrainer`` (through a
subclass that sets ``num_scans_per_batch``) and ``nnUNetTrainer`` on the same plans, 2d
configuration and device, the way ``nnunetv2.run.run_training.get_trainer_from_args`` does.

"Same batch and patch": a pre-training batch is m scans x S slices (one per slice partition) x
V=2 views, i.e. 2*m*S images of the plan's 2d patch through the encoder (+ projector); the stock
trainer gets batch size 2*m*S on the same patch (whole U-Net, deep supervision, Dice+CE).

Each iteration is timed in two parts: ``next(dataloader_train)`` (data) and
``train_step(batch)`` (step: forward, backward, optimiser). Iterations of the two trainers are
interleaved so that both see the same machine load. With ``nnUNet_n_proc_DA=0`` (the default
here) batches are made in this process, so "data" is the full cost of loading and augmenting
a batch; with background workers it is only the time spent waiting for one.

``--data-only`` skips ``train_step``: only ``next(dataloader_train)`` is timed, and the table gives
images/s of each loader (median, min, max over the timed iterations) and images per CPU second
of this process (``time.process_time``; less sensitive to other load on the machine than the
wall clock); at ``nnUNet_n_proc_DA=0`` and ``--threads 1`` (nnU-Net's workers run with one torch
thread) that is what one data-loading worker delivers.

    python benchmarks/bench_trainer.py                       # CPU, m=4, temp workspace
    python benchmarks/bench_trainer.py --device cuda --batch-scans 8 --iters 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _tool(name: str) -> list[str]:
    """A console script of this environment (next to the running python), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return [str(here)]
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"error: {name} not found next to {sys.executable} or on PATH")
    return [found]


def prepare_workspace(workdir: Path, dataset_id: int, log) -> str:
    """Synthetic raw dataset, 2d plan + preprocessing, SP-Con sidecars; steps already done are skipped."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from spcl_nnunet.synthetic import generate_synthetic_dataset

    raw = Path(os.environ["nnUNet_raw"])
    if not any(raw.glob(f"Dataset{dataset_id:03d}_*")):
        print(f"[setup] synthetic dataset {dataset_id} -> {raw}", flush=True)
        generate_synthetic_dataset(raw, dataset_id)
    name = maybe_convert_to_dataset_name(dataset_id)
    pre = Path(os.environ["nnUNet_preprocessed"]) / name
    if not ((pre / "nnUNetPlans.json").is_file() and (pre / "nnUNetPlans_2d").is_dir()):
        print("[setup] nnUNetv2_plan_and_preprocess -c 2d", flush=True)
        # the planner calls torch.set_num_threads(nnUNet_n_proc_DA), which must be >= 1
        env = dict(os.environ, nnUNet_n_proc_DA=str(max(1, int(os.environ["nnUNet_n_proc_DA"]))))
        subprocess.run(_tool("nnUNetv2_plan_and_preprocess") + ["-d", str(dataset_id), "-c", "2d", "-np", "1"],
                       env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    print("[setup] spcl_nnunet prepare", flush=True)
    subprocess.run(_tool("spcl_nnunet") + ["prepare", "-d", str(dataset_id)], check=True, stdout=log,
                   stderr=subprocess.STDOUT)
    return name


def open_workspace(workdir_arg: str | None, prefix: str, n_proc_da: int, compile_network: bool) -> tuple[Path, bool]:
    """(workspace, temporary?); sets nnU-Net's environment (before nnU-Net is imported): the data
    folders always live in the workspace, nnUNet_extTrainer points at the repository's trainers/."""
    temporary = workdir_arg is None
    workdir = Path(tempfile.mkdtemp(prefix=prefix) if temporary else workdir_arg).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: str(workdir / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    os.environ["nnUNet_n_proc_DA"] = str(n_proc_da)
    os.environ["nnUNet_def_n_proc"] = "1"
    os.environ["nnUNet_compile"] = "true" if compile_network else "false"
    from spcl_nnunet.data.environment import required_environment

    os.environ.update(required_environment(workdir))
    return workdir, temporary


def close_workspace(trainers: list, workdir: Path, log_path: Path, temporary: bool, finished: bool) -> None:
    """End the trainers (checkpoint_final.pth, background loaders stopped); remove a temporary
    workspace after a finished run, keep it (and say so) after a failure."""
    with open(log_path, "a") as log, contextlib.redirect_stdout(log):
        for trainer in trainers:
            if trainer.dataloader_train is not None:
                trainer.on_train_end()
    if temporary and finished:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not finished:
        print(f"[error] benchmark failed; workspace and log kept: {log_path}", file=sys.stderr)


def build_trainers(dataset_id: int, fold: int, device, batch_scans: int):
    """(SP-Con pre-trainer with m = batch_scans, stock nnUNetTrainer with batch size 2*m*S)."""
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    # the class nnU-Net finds by name (through nnUNet_extTrainer), with m set in a subclass; the
    # self-paced weight heat-map (drawn once every 10 epochs) is switched off
    base = recursive_find_trainer_class_by_name("SPConPretrainTrainer")
    bench_cls = type("SPConPretrainTrainer_bench", (base,),
                     {"num_scans_per_batch": batch_scans, "heatmap_every": 0, "__module__": __name__})
    # what get_trainer_from_args does, for a class it cannot look up by name
    folder = join(nnUNet_preprocessed, maybe_convert_to_dataset_name(dataset_id))
    plans = load_json(join(folder, "nnUNetPlans.json"))
    plans["continue_training"] = False
    spcon = bench_cls(plans=plans, configuration="2d", fold=fold, dataset_json=load_json(join(folder, "dataset.json")),
                      device=device)
    spcon.load_spcon_sidecars()
    images = spcon.num_views * batch_scans * spcon.meta_labels.slice_partitions

    stock = get_trainer_from_args(str(dataset_id), "2d", fold, "nnUNetTrainer", device=device)
    # ConfigurationManager.batch_size reads configuration['batch_size']; initialize() copies it
    stock.configuration_manager.configuration["batch_size"] = images
    return spcon, stock, images


def sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def timed_iteration(trainer, device, data_only: bool = False) -> tuple[float, float, float, int, tuple[int, ...]]:
    """(data seconds, step seconds, data CPU seconds of this process, images, patch) of one training
    iteration (data_only: no step, 0 s)."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    batch = next(trainer.dataloader_train)
    t1, c1 = time.perf_counter(), time.process_time()
    if not data_only:
        trainer.train_step(batch)
    sync(device)
    t2 = time.perf_counter()
    data = batch["data"]
    return t1 - t0, t2 - t1, c1 - c0, int(data.shape[0]), tuple(int(s) for s in data.shape[2:])


def print_data_only(results: dict) -> int:
    """--data-only: seconds per batch, images/s (median, min, max) and images per CPU second (median)
    of each loader, and the ratios."""
    header = (f"{'loader':<22} | {'images/it':>9} | {'patch':>8} | {'s/it (data)':>11} | "
              f"{'images/s median':>15} | {'min':>6} | {'max':>6} | {'images/CPU-s':>12}")
    print(header)
    print("-" * len(header))
    rate, cpu_rate = {}, {}
    for name, r in results.items():
        n = max(r["images"])
        rates = [n / s for s in r["data"]]
        rate[name], cpu_rate[name] = statistics.median(rates), statistics.median(n / s for s in r["cpu"])
        patch = "/".join("x".join(map(str, p)) for p in sorted(r["patch"]))
        print(f"{name:<22} | {n:>9} | {patch:>8} | {statistics.median(r['data']):>11.3f} | "
              f"{rate[name]:>15.1f} | {min(rates):>6.1f} | {max(rates):>6.1f} | {cpu_rate[name]:>12.1f}")
    ours, stock = "SPConPretrainTrainer", "nnUNetTrainer"
    print(f"{'ratio SP-Con / stock':<22} | {'':>9} | {'':>8} | {'':>11} | {rate[ours] / rate[stock]:>15.2f} | "
          f"{'':>6} | {'':>6} | {cpu_rate[ours] / cpu_rate[stock]:>12.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None,
                        help="workspace (nnUNet_raw/_preprocessed/_results under it; default: a temp dir, removed "
                             "at the end). An existing workspace is reused: steps already done are skipped")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-scans", type=int, default=4, help="m: scans per pre-training batch")
    parser.add_argument("--iters", type=int, default=8, help="timed iterations per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per trainer")
    parser.add_argument("--fold", type=int, default=0, help="fold of both trainers (spcl_folds / splits_final)")
    parser.add_argument("-d", "--dataset-id", type=int, default=987)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--n-proc-da", type=int, default=0,
                        help="nnUNet_n_proc_DA (0: batches made in this process, so 'data' is their full cost)")
    parser.add_argument("--compile", action="store_true",
                        help="let nnU-Net torch.compile the stock network on CUDA (off by default: the "
                             "pre-trainer calls the uncompiled encoder)")
    parser.add_argument("--data-only", action="store_true",
                        help="time only next(dataloader_train), no train_step; report images/s per loader")
    args = parser.parse_args()
    if args.batch_scans < 1 or args.iters < 1 or args.warmup < 0:
        parser.error("--batch-scans and --iters must be >= 1, --warmup >= 0")

    workdir, temporary = open_workspace(args.workdir, "spcl_bench_", args.n_proc_da, args.compile)

    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)

    log_path = workdir / "bench_trainer.log"
    trainers = []
    finished = False
    try:
        with open(log_path, "a") as log:
            prepare_workspace(workdir, args.dataset_id, log)
            print(f"[setup] trainers (their console output goes to {log_path})", flush=True)
            with contextlib.redirect_stdout(log):
                spcon, stock, images = build_trainers(args.dataset_id, args.fold, device, args.batch_scans)
                trainers = [("SPConPretrainTrainer", spcon), ("nnUNetTrainer", stock)]
                for _, trainer in trainers:
                    trainer.on_train_start()
                    trainer.on_train_epoch_start()  # sets gamma (SP-Con), train mode, learning rate
            results = {name: {"data": [], "step": [], "cpu": [], "images": set(), "patch": set()}
                       for name, _ in trainers}
            total = args.warmup + args.iters
            load_before = os.getloadavg()[0]
            for i in range(total):
                for name, trainer in (trainers if i % 2 == 0 else trainers[::-1]):  # interleaved
                    with contextlib.redirect_stdout(log):
                        data_s, step_s, cpu_s, n, patch = timed_iteration(trainer, device, args.data_only)
                    r = results[name]
                    r["images"].add(n)
                    r["patch"].add(patch)
                    if i >= args.warmup:
                        r["data"].append(data_s)
                        r["step"].append(step_s)
                        r["cpu"].append(cpu_s)
                print(f"[run] iteration {i + 1}/{total}" + (" (warm-up)" if i < args.warmup else ""), flush=True)
        finished = True
    finally:
        close_workspace([t for _, t in trainers], workdir, log_path, temporary, finished)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    m, s_parts = args.batch_scans, images // (2 * args.batch_scans)
    print(f"\ntorch {torch.__version__}, {where}, nnUNet_n_proc_DA={args.n_proc_da}; "
          f"m={m} scans x S={s_parts} slices x 2 views = {images} images; "
          f"median of {args.iters} iterations after {args.warmup} warm-up; load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after the timed loop ({os.cpu_count()} CPUs)")
    if args.data_only:
        return print_data_only(results)
    header = (f"{'trainer':<22} | {'images/it':>9} | {'patch':>8} | {'s/it (step)':>11} | "
              f"{'s/it (data)':>11} | {'s/it (total)':>12}")
    print(header)
    print("-" * len(header))
    med = {}
    for name, r in results.items():
        step, data = statistics.median(r["step"]), statistics.median(r["data"])
        med[name] = (step, data)
        images_seen = "/".join(str(x) for x in sorted(r["images"]))
        patch = "/".join("x".join(map(str, p)) for p in sorted(r["patch"]))
        print(f"{name:<22} | {images_seen:>9} | {patch:>8} | {step:>11.3f} | {data:>11.3f} | {step + data:>12.3f}")
    (s_step, s_data), (b_step, b_data) = med["SPConPretrainTrainer"], med["nnUNetTrainer"]
    print(f"{'ratio SP-Con / stock':<22} | {'':>9} | {'':>8} | {s_step / b_step:>11.2f} | "
          f"{s_data / b_data:>11.2f} | {(s_step + s_data) / (b_step + b_data):>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
