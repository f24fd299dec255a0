"""Seconds per iteration of the semi-supervised trainers against SPConFinetuneTrainer, one run.

Same workspace as ``bench_trainer.py`` (synthetic dataset -> ``nnUNetv2_plan_and_preprocess -c 2d``
-> ``spcl_nnunet prepare``). In this process it builds, on the same plans, fold and device, with the
same labeled batch (``--batch``) and the plan's 2d patch:

- ``SPConFinetuneTrainer``: L_sup only (the reference);
- ``EntropyMinTrainer``: + an unlabeled batch of the same size (student forward);
- ``MeanTeacherTrainer``: + an unlabeled batch of the same size (student on T(x), teacher on x, EMA);
- ``FixMatchTrainer``: + an unlabeled batch of the same size (teacher on the weak view, student on the
  strong view: geometric transform, CutMix, intensity perturbations on the CPU, EMA);
- ``SPConMeanTeacherTrainer``: + a meta-label batch of m = batch // S scans x S slices x 2 views
  (teacher on view 1, student encoder on both views, decoder on view 1, projector, L_sp);
- the compared methods: ``MixUpTrainer`` (+ a second labeled batch, the mixed pairs through the
  student), ``AdversarialTrainer`` (+ an unlabeled batch through the student and the discriminator,
  then the discriminator's own step), ``DiscreteMITrainer`` (+ an unlabeled batch and its second view
  through the student, cluster heads at three levels). Goal (issue #10): none above 2.6x.

An iteration is ``next(dataloader_train)`` + ``train_step`` (which fetches the unlabeled batch):
with ``nnUNet_n_proc_DA=0`` (the default here) every batch is made in this process, so the time
includes loading and augmenting both batches. Iterations of the trainers are interleaved so that
they see the same machine load.

``--data-only`` times the unlabeled loader alone: ``next(trainer.dataloader_unlabeled)`` of
``MeanTeacherTrainer`` and ``FixMatchTrainer`` (unlabeled batch = ``--batch``) against
``next(dataloader_train)`` of nnU-Net's stock ``nnUNetTrainer`` at batch ``--batch``, no
``train_step``; plus FixMatch's strong intensity perturbation (``perturb_intensity``, batchgeneratorsv2
transforms per image on the CPU, run inside its ``train_step`` in the training process, not in a
worker) on that batch. It reports images/s (median, min, max) and images per CPU second of this
process; at ``nnUNet_n_proc_DA=0`` and ``--threads 1`` that is one data-loading worker.

    python benchmarks/bench_semisupervised.py                     # CPU, batch 8, temp workspace
    python benchmarks/bench_semisupervised.py --device cuda --batch 32 --iters 20
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trainer import close_workspace, open_workspace, prepare_workspace, sync  # noqa: E402

DATA_ONLY_TRAINERS = ("MeanTeacherTrainer", "FixMatchTrainer", "nnUNetTrainer")
TRAINERS = ("SPConFinetuneTrainer", "EntropyMinTrainer", "MeanTeacherTrainer", "SPConMeanTeacherTrainer",
            "FixMatchTrainer", "MixUpTrainer", "AdversarialTrainer", "DiscreteMITrainer")


def build(name: str, dataset_id: int, fold: int, device, batch: int):
    """The class nnU-Net finds by name, with the labeled batch size set in a subclass (nnU-Net's stock
    nnUNetTrainer: as get_trainer_from_args builds it, batch size set in its configuration)."""
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    if name == "nnUNetTrainer":
        stock = get_trainer_from_args(str(dataset_id), "2d", fold, name, device=device)
        stock.configuration_manager.configuration["batch_size"] = batch
        return stock
    base = recursive_find_trainer_class_by_name(name)
    cls = type(f"{name}_bench", (base,), {"batch_size_override": batch, "heatmap_every": 0, "__module__": __name__})
    folder = join(nnUNet_preprocessed, maybe_convert_to_dataset_name(dataset_id))
    plans = load_json(join(folder, "nnUNetPlans.json"))
    plans["continue_training"] = False
    return cls(plans=plans, configuration="2d", fold=fold, dataset_json=load_json(join(folder, "dataset.json")),
               device=device)


def timed_iteration(trainer, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    trainer.train_step(next(trainer.dataloader_train))
    sync(device)
    return time.perf_counter() - t0


def timed_batches(name: str, trainer) -> dict[str, tuple[float, float, int]]:
    """--data-only: {row: (seconds, CPU seconds of this process, images)} of one batch of the
    unlabeled loader (the stock trainer: its training loader) and, for FixMatch, of its strong
    intensity perturbation of that batch."""
    loader = trainer.dataloader_train if name == "nnUNetTrainer" else trainer.dataloader_unlabeled
    t0, c0 = time.perf_counter(), time.process_time()
    batch = next(loader)
    t1, c1 = time.perf_counter(), time.process_time()
    n = int(batch["data"].shape[0])
    rows = {name: (t1 - t0, c1 - c0, n)}
    if name == "FixMatchTrainer" and trainer.strong_intensity:
        trainer.perturb_intensity(batch["data"])
        rows["FixMatch perturb_intensity"] = (time.perf_counter() - t1, time.process_time() - c1, n)
    return rows


def print_data_only(times: dict[str, list[tuple[float, float, int]]]) -> None:
    header = (f"{'loader':<26} | {'images/it':>9} | {'s/it':>6} | {'images/s median':>15} | {'min':>6} | "
              f"{'max':>6} | {'images/CPU-s':>12} | {'x stock':>7}")
    print(header)
    print("-" * len(header))
    stock = statistics.median(n / s for s, _, n in times["nnUNetTrainer"])
    for row, values in times.items():
        rates = [n / s for s, _, n in values]
        med = statistics.median(rates)
        print(f"{row:<26} | {values[0][2]:>9} | {statistics.median(s for s, _, _ in values):>6.3f} | "
              f"{med:>15.1f} | {min(rates):>6.1f} | {max(rates):>6.1f} | "
              f"{statistics.median(n / c for _, c, n in values):>12.1f} | {med / stock:>7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="workspace (default: a temp dir, removed at the end); "
                                                        "an existing workspace is reused")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=8, help="labeled batch size of every trainer")
    parser.add_argument("--iters", type=int, default=6, help="timed iterations per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per trainer")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("-d", "--dataset-id", type=int, default=987)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--n-proc-da", type=int, default=0, help="nnUNet_n_proc_DA (0: batches made in this process)")
    parser.add_argument("--data-only", action="store_true",
                        help="time only the unlabeled loader of MeanTeacher/FixMatch against the stock loader at "
                             "batch --batch (no train_step); report images/s")
    args = parser.parse_args()
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        parser.error("--batch and --iters must be >= 1, --warmup >= 0")

    workdir, temporary = open_workspace(args.workdir, "spcl_bench_ssl_", args.n_proc_da, compile_network=False)

    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)

    log_path = workdir / "bench_semisupervised.log"
    trainers: list[tuple[str, object]] = []
    finished = False
    try:
        with open(log_path, "a") as log:
            prepare_workspace(workdir, args.dataset_id, log)
            print(f"[setup] trainers (their console output goes to {log_path})", flush=True)
            with contextlib.redirect_stdout(log):
                for name in (DATA_ONLY_TRAINERS if args.data_only else TRAINERS):
                    trainer = build(name, args.dataset_id, args.fold, device, args.batch)
                    trainer.on_train_start()
                    trainer.on_train_epoch_start()
                    trainers.append((name, trainer))
            times: dict[str, list] = {name: [] for name, _ in trainers}
            total = args.warmup + args.iters
            for i in range(total):
                order = trainers if i % 2 == 0 else trainers[::-1]
                for name, trainer in order:
                    with contextlib.redirect_stdout(log):
                        if args.data_only:
                            rows = timed_batches(name, trainer)
                        else:
                            rows = {name: timed_iteration(trainer, device)}
                    if i >= args.warmup:
                        for row, value in rows.items():
                            times.setdefault(row, []).append(value)
                print(f"[run] iteration {i + 1}/{total}" + (" (warm-up)" if i < args.warmup else ""), flush=True)
        finished = True
    finally:
        close_workspace([t for _, t in trainers], workdir, log_path, temporary, finished)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if args.data_only:
        patch = "x".join(map(str, trainers[0][1].configuration_manager.patch_size))
        print(f"\ntorch {torch.__version__}, {where}, nnUNet_n_proc_DA={args.n_proc_da}; batch {args.batch}, patch "
              f"{patch}; median of {args.iters} batches after {args.warmup} warm-up")
        print_data_only(times)
        return 0
    spcon_mt = dict(trainers)["SPConMeanTeacherTrainer"]
    s = spcon_mt.meta_labels.slice_partitions
    m = spcon_mt.num_scans_per_batch or max(1, spcon_mt.batch_size // s)
    patch = "x".join(map(str, spcon_mt.configuration_manager.patch_size))
    print(f"\ntorch {torch.__version__}, {where}, nnUNet_n_proc_DA={args.n_proc_da}; labeled batch {args.batch}, "
          f"patch {patch}; unlabeled batch {args.batch} (EntMin, MT, adversarial, discrete MI; MixUp: a second "
          f"labeled batch), {m} scans x {s} slices x 2 views (SP-Con+MT); "
          f"median of {args.iters} iterations after {args.warmup} warm-up")
    header = f"{'trainer':<24} | {'s/it':>7} | {'x SPConFinetuneTrainer':>22}"
    print(header)
    print("-" * len(header))
    reference = statistics.median(times["SPConFinetuneTrainer"])
    for name in TRAINERS:
        med = statistics.median(times[name])
        print(f"{name:<24} | {med:>7.3f} | {med / reference:>22.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
