"""Command line: ``spcl_nnunet {env,add-unlabeled,metalabels,folds,prepare,synthetic,convert,splits,demo,experiment,
export-teacher}``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spcl_nnunet.data.jsonfile import read_json


def _dataset_folder(base_env: str, dataset_id: int) -> Path:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    base = os.environ.get(base_env)
    if not base:
        raise ValueError(f"{base_env} is not set (run: eval \"$(spcl_nnunet env)\")")
    return Path(base) / maybe_convert_to_dataset_name(dataset_id)


def cmd_env(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.environment import export_lines, required_environment

    lines = export_lines(required_environment(args.root))
    print("\n".join(lines) if lines else "# nothing to set: nnUNet_extTrainer and the nnU-Net folders are set")
    return 0


def synthetic_description() -> str:
    from spcl_nnunet.synthetic.profiles import PROFILES

    lines = ["Profiles (patients: default / minimum; split: validation + test patients; labeled counts of "
             "the folds):"]
    for profile in PROFILES.values():
        lines.append(f"  {profile.name:8s} {profile.n_patients} / {profile.minimum_patients()} patients, "
                     f"{profile.n_val_patients} + {profile.n_test_patients} held out, labeled "
                     f"{', '.join(map(str, profile.labeled_counts))}, {profile.image_size[0]}x{profile.image_size[1]}"
                     f" px: {profile.description}")
    return "\n".join(lines)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.splits import load_fold_table
    from spcl_nnunet.synthetic import generate_synthetic_dataset, get_profile

    profile = get_profile(args.profile)
    if args.patients is not None and args.patients < profile.minimum_patients():
        raise ValueError(f"--patients {args.patients} is too few for the '{profile.name}' profile: it sets aside "
                         f"{profile.n_val_patients} validation + {profile.n_test_patients} test patients and its "
                         f"largest labeled count is {max(profile.labeled_counts)} scans; use --patients "
                         f"{profile.minimum_patients()} or more")
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        raise ValueError("nnUNet_raw is not set (run: eval \"$(spcl_nnunet env)\")")
    folder = generate_synthetic_dataset(raw, args.d, n_patients=args.patients, seed=args.seed, profile=args.profile,
                                        overwrite=args.overwrite)
    print(f"wrote {folder}")
    print(load_fold_table(folder).describe())
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.sidecars import install_sidecars
    from spcl_nnunet.data.splits import load_fold_table

    raw = _dataset_folder("nnUNet_raw", args.d)
    pre = _dataset_folder("nnUNet_preprocessed", args.d)
    for path in install_sidecars(raw, pre):
        print(f"installed {path}")
    print(load_fold_table(pre).describe())
    return 0


def cmd_add_unlabeled(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.metalabels import META_LABELS_FILE
    from spcl_nnunet.data.unlabeled import UNLABELED_FILE, add_unlabeled_images

    raw = _dataset_folder("nnUNet_raw", args.d)
    added = add_unlabeled_images(raw, Path(args.i))
    print(f"added {len(added)} label-less case(s) to {raw} (imagesTr, placeholder labels in labelsTr, listed in "
          f"{UNLABELED_FILE}): {', '.join(added[:8])}{' ...' if len(added) > 8 else ''}")
    if (raw / META_LABELS_FILE).is_file():
        print(f"{raw / META_LABELS_FILE} does not list them yet: run 'spcl_nnunet metalabels -d {args.d} ...' again")
    return 0


def cmd_metalabels(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.metalabel_sources import derive_meta_labels, parse_pattern_options
    from spcl_nnunet.data.metalabels import META_LABELS_FILE, save_meta_labels
    from spcl_nnunet.data.rawdataset import training_case_ids
    from spcl_nnunet.data.unlabeled import load_unlabeled

    raw = _dataset_folder("nnUNet_raw", args.d)
    if (raw / META_LABELS_FILE).exists() and not args.overwrite:
        raise FileExistsError(f"{raw / META_LABELS_FILE} exists; pass --overwrite to replace it")
    meta = derive_meta_labels(training_case_ids(raw), args.slice_partitions, patient_pattern=args.patient,
                              patterns=parse_pattern_options(args.label or []),
                              csv_path=Path(args.csv) if args.csv else None, unlabeled=load_unlabeled(raw))
    path = save_meta_labels(meta, raw / META_LABELS_FILE)
    patients = len({labels["patient"] for labels in meta.cases.values()})
    others = [k for k in meta.keys() if k != "patient"]
    print(f"wrote {path}: {len(meta.cases)} cases ({len(meta.unlabeled)} label-less), {patients} patients, "
          f"meta-labels patient{''.join(', ' + k for k in others)} + slice position ({meta.slice_partitions} "
          f"partitions)")
    return 0


def cmd_folds(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.crossval import cross_validation_folds, folds_from_splits
    from spcl_nnunet.data.metalabels import META_LABELS_FILE, load_meta_labels
    from spcl_nnunet.data.rawdataset import load_dataset_json
    from spcl_nnunet.data.splits import FOLDS_FILE, SPLITS_FILE, write_fold_files
    from spcl_nnunet.data.unlabeled import check_unlabeled_listed

    raw = _dataset_folder("nnUNet_raw", args.d)
    if not (raw / META_LABELS_FILE).is_file():
        raise FileNotFoundError(f"{raw / META_LABELS_FILE} not found: run 'spcl_nnunet metalabels -d {args.d}' first "
                                f"(the folds group the cases by patient and leave the label-less ones out)")
    if ((raw / FOLDS_FILE).exists() or (raw / SPLITS_FILE).exists()) and not args.overwrite:
        raise FileExistsError(f"{raw} already has {FOLDS_FILE}/{SPLITS_FILE}; pass --overwrite to replace them")
    meta = load_meta_labels(raw / META_LABELS_FILE)
    check_unlabeled_listed(raw, meta.unlabeled)
    test = labeled_test_cases(raw, load_dataset_json(raw)["file_ending"])
    if args.splits:
        source = Path(args.splits)
        if not source.is_file():
            raise FileNotFoundError(f"--splits {source}: no such file")
        splits = read_json(source)
        table = folds_from_splits(splits, meta, str(source), test=test)
    else:
        table = cross_validation_folds(meta, args.nfolds, args.seed, test=test)
    write_fold_files(raw, table)
    print(f"wrote {raw / FOLDS_FILE} and {raw / SPLITS_FILE}")
    print(table.describe())
    return 0


def labeled_test_cases(raw: Path, file_ending: str) -> list[str]:
    """Cases of imagesTs that have a reference in labelsTs (scored by ``experiment --evaluate test``)."""
    if not (raw / "labelsTs").is_dir():
        return []
    labels = {p.name[:-len(file_ending)] for p in (raw / "labelsTs").glob(f"*{file_ending}")}
    images = {p.name[:-len(file_ending) - 5] for p in (raw / "imagesTs").glob(f"*_0000{file_ending}")} \
        if (raw / "imagesTs").is_dir() else set()
    return sorted(labels & images)


def cmd_splits(args: argparse.Namespace) -> int:
    from spcl_nnunet.data.metalabels import load_meta_labels
    from spcl_nnunet.data.splits import FOLDS_FILE, SPLITS_FILE, make_fold_table, split_groups, write_fold_files

    raw = _dataset_folder("nnUNet_raw", args.d)
    if ((raw / FOLDS_FILE).exists() or (raw / SPLITS_FILE).exists()) and not args.overwrite:
        raise ValueError(f"{raw} already has {FOLDS_FILE}/{SPLITS_FILE}; pass --overwrite to replace them")
    meta = load_meta_labels(raw / "meta_labels.json")
    groups: dict[str, list[str]] = {}
    for case, labels in meta.cases.items():
        groups.setdefault(labels.get("patient", case), []).append(case)
    train_pool, val, _ = split_groups(groups, args.val_groups, 0, args.seed)
    labeled_pool = [c for c in train_pool if c not in set(meta.unlabeled)]
    test = sorted(p.name.rsplit("_", 1)[0] for p in (raw / "imagesTs").glob("*_0000*")) \
        if (raw / "imagesTs").is_dir() else []
    table = make_fold_table(labeled_pool, val, args.labeled, args.repeats, args.seed, test=test)
    write_fold_files(raw, table)
    print(f"wrote {raw / FOLDS_FILE} and {raw / SPLITS_FILE}")
    print(table.describe())
    return 0


CONVERTERS = ("acdc", "promise12", "mmwhs", "hippocampus", "spleen")
# CLI flag -> (the converter it belongs to, keyword of its convert(), value)
CONVERTER_OPTIONS = {
    "with_unlabeled": ("promise12", "with_unlabeled", True),
    "include_official_test": ("acdc", "include_official_test", True),
    "unknown_labels_as_background": ("mmwhs", "unknown_labels_as_background", True),
    "no_clip": ("spleen", "intensity_clip", None),
}


def cmd_convert(args: argparse.Namespace) -> int:
    import importlib

    raw = os.environ.get("nnUNet_raw")
    if not raw:
        raise ValueError("nnUNet_raw is not set (run: eval \"$(spcl_nnunet env)\")")
    module = importlib.import_module(f"spcl_nnunet.conversion.{args.dataset}")
    options = {}
    for flag, (dataset, key, value) in CONVERTER_OPTIONS.items():
        if getattr(args, flag):
            if args.dataset != dataset:
                raise ValueError(f"--{flag.replace('_', '-')} applies to '{dataset}' only, not '{args.dataset}'")
            options[key] = value
    folder, table = module.convert(Path(args.i), Path(raw), args.d, overwrite=args.overwrite, seed=args.seed,
                                   **options)
    print(f"wrote {folder}")
    print(table.describe())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spcl_nnunet.experiment.demo import run_demo

    return run_demo(workdir=Path(args.workdir), dataset_id=args.d, device=args.device, seed=args.seed,
                    fold=args.fold)


def cmd_experiment(args: argparse.Namespace) -> int:
    from spcl_nnunet.experiment.methods import get_methods
    from spcl_nnunet.experiment.plan import ExperimentConfig
    from spcl_nnunet.experiment.runner import run_experiment
    from spcl_nnunet.training.schedules import load_schedule

    config = ExperimentConfig(dataset_id=args.d, methods=get_methods(args.methods),
                              schedule=load_schedule(args.schedule), workdir=Path(args.workdir), labeled=args.labeled,
                              splits=args.splits, folds=args.folds, device=args.device, jobs=args.jobs,
                              evaluate=args.evaluate, shared_pretraining=args.shared_pretraining,
                              pretraining_from=Path(args.pretraining_from) if args.pretraining_from else None,
                              pretrain_only=args.pretrain_only)
    return run_experiment(config)


def experiment_description() -> str:
    from spcl_nnunet.experiment.methods import METHODS
    from spcl_nnunet.training.schedules import SCHEDULES

    import textwrap

    lines = textwrap.wrap("Trains every method on every fold asked for through nnUNetv2_train (pre-trainings shared "
                          "by the folds), predicts the fold table's test cases with nnUNetv2_predict and evaluates "
                          "them with nnU-Net; writes results.json/csv/md and learning_curve.png into the working "
                          "folder. Resumable: run the same command again to go on after an interruption; finished "
                          "steps are reused.", 100) + ["", "Methods:"]
    for method in METHODS.values():
        recipe = f"{method.pretrainer} -> {method.trainer}" if method.pretrainer else method.trainer
        needs = f" (needs meta-label {', '.join(method.meta_labels)})" if method.meta_labels else ""
        lines += textwrap.wrap(f"{method.name:14s} {method.label}: {recipe}{needs}", 100, initial_indent="  ",
                               subsequent_indent=" " * 17)
    lines += ["", "Schedules:"]
    for schedule in SCHEDULES.values():
        lines += textwrap.wrap(f"{schedule.name:8s} {schedule.description}", 100, initial_indent="  ",
                               subsequent_indent=" " * 11)
    return "\n".join(lines)


def cmd_export_teacher(args: argparse.Namespace) -> int:
    from spcl_nnunet.networks.export import export_teacher

    target = export_teacher(args.checkpoint, args.o, overwrite=args.overwrite)
    print(f"wrote {target} (network_weights = the Mean Teacher's weights)")
    if target.parent == Path(args.checkpoint).parent:
        print(f"predict with the teacher: nnUNetv2_predict ... -chk {target.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from spcl_nnunet.synthetic.profiles import PROFILES

    parser = argparse.ArgumentParser(prog="spcl_nnunet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("env", help="print the export lines nnU-Net needs to find the SP-Con trainers")
    p.add_argument("--root", default="nnUNet_data", help="base folder for nnU-Net folders that are unset")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("add-unlabeled", help="add a folder of label-less images to a raw dataset (imagesTr, "
                                             "placeholder labels, listed as unlabeled)")
    p.add_argument("-d", required=True, help="dataset id or name (in nnUNet_raw)")
    p.add_argument("-i", required=True, help="folder of images with the dataset's file ending: NAME<ending> "
                                             "(single channel) or CASE_XXXX<ending> per channel")
    p.set_defaults(func=cmd_add_unlabeled)

    p = sub.add_parser("metalabels", help="write meta_labels.json for a raw dataset from patterns over the case "
                                          "ids and/or a CSV")
    p.add_argument("-d", required=True, help="dataset id or name (in nnUNet_raw)")
    p.add_argument("--patient", default=None, metavar="REGEX",
                   help="the patient of each case: first capture group of REGEX searched in the case id, e.g. "
                        "'^(patient\\d+)' (default: each case is its own patient)")
    p.add_argument("--label", action="append", metavar="NAME=REGEX",
                   help="a further case-level meta-label from the case id, e.g. phase='_(ED|ES)$' (repeatable)")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="meta-labels from a table: a 'case' column and one column per meta-label (e.g. patient, "
                        "site, scanner)")
    p.add_argument("--slice-partitions", type=int, default=3, metavar="S",
                   help="slice-position partitions per scan (default 3, the paper's ACDC setting)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing meta_labels.json")
    p.set_defaults(func=cmd_metalabels)

    p = sub.add_parser("folds", help="cross-validation folds over the labeled cases, grouped by patient "
                                     "(spcl_folds.json + splits_final.json), or check your own splits_final.json")
    p.add_argument("-d", required=True, help="dataset id or name (in nnUNet_raw; needs meta_labels.json)")
    p.add_argument("--nfolds", type=int, default=5, help="number of folds (default: nnU-Net's 5)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the split (default: nnU-Net's 12345)")
    p.add_argument("--splits", default=None, metavar="FILE",
                   help="use this splits_final.json instead (checked: no label-less case, no patient on both sides)")
    p.add_argument("--overwrite", action="store_true", help="replace existing fold files")
    p.set_defaults(func=cmd_folds)

    p = sub.add_parser("synthetic", help="write the embedded synthetic cardiac cine-MRI dataset into nnUNet_raw",
                       description=synthetic_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", type=int, required=True, help="dataset id: DatasetXXX_SyntheticCardiac (default profile) "
                                                        "or DatasetXXX_SyntheticACDC (acdc profile)")
    p.add_argument("--profile", default="default", choices=list(PROFILES),
                   help="how hard the data is: 'default' (regular anatomy) or 'acdc' (calibrated to ACDC's "
                        "difficulty with few labeled scans); see the list above")
    p.add_argument("--patients", type=int, default=None,
                   help="number of patients, 2 scans each (default and minimum per profile: see below)")
    p.add_argument("--seed", type=int, default=0, help="seed of the anatomy, the splits and the labeled draws")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder of the same name")
    p.set_defaults(func=cmd_synthetic)

    p = sub.add_parser("prepare", help="copy meta_labels.json and the folds next to the preprocessed dataset "
                                       "(after nnUNetv2_plan_and_preprocess)")
    p.add_argument("-d", required=True, help="dataset id or name")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("convert", help="convert a downloaded dataset into an nnU-Net raw dataset with "
                                       "meta-labels and the paper's splits")
    p.add_argument("dataset", choices=CONVERTERS)
    p.add_argument("-i", required=True, help="the folder you unpacked the download into")
    p.add_argument("-d", type=int, required=True, help="nnU-Net dataset id")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test and labeled splits")
    p.add_argument("--with-unlabeled", action="store_true",
                   help="PROMISE12: add TestData (no segmentations) as label-less training images")
    p.add_argument("--include-official-test", action="store_true",
                   help="ACDC: also convert the official testing patients into imagesTs (outside the paper's "
                        "protocol, under their own case ids)")
    p.add_argument("--unknown-labels-as-background", action="store_true",
                   help="MMWHS: map label values outside the known structures to background instead of failing")
    p.add_argument("--no-clip", action="store_true",
                   help="Spleen: keep the original HU values instead of the paper's [-100, 400] clipping")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("splits", help="the paper's benchmark protocol instead of cross-validation: labeled-subset "
                                      "folds (random labeled scans, fixed validation scans) of a raw dataset that "
                                      "has meta_labels.json")
    p.add_argument("-d", required=True, help="dataset id or name")
    p.add_argument("--labeled", type=int, nargs="+", default=[1, 2, 4], help="labeled scan counts")
    p.add_argument("--repeats", type=int, default=3, help="random labeled splits per count")
    p.add_argument("--val-groups", type=int, required=True,
                   help="validation patients (meta-label 'patient'; cases without it count alone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("demo", help="synthetic data -> plan -> SP-Con pre-training -> fine-tuning vs baseline "
                                    "-> nnUNetv2_predict -> 3D Dice table")
    p.add_argument("--workdir", default="spcl_demo", help="working folder (nnU-Net folders unless already set)")
    p.add_argument("-d", type=int, default=901, help="dataset id for the synthetic dataset")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available, else CPU")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--fold", type=int, default=0, help="labeled configuration (fold 0: 1 labeled scan)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("experiment", help="the paper's comparison (Tables 2-3): methods x labeled folds through "
                                          "nnU-Net, test Dice tables and learning curve",
                       description=experiment_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", type=int, required=True, help="dataset id (raw dataset with meta_labels.json and "
                                                       "spcl_folds.json, e.g. from 'spcl_nnunet convert')")
    p.add_argument("--methods", nargs="+", required=True, metavar="METHOD", help="methods to compare (listed above)")
    p.add_argument("--labeled", type=int, nargs="+", default=None, metavar="N",
                   help="labeled scan counts of the folds to run (default: every count in spcl_folds.json)")
    p.add_argument("--splits", type=int, nargs="+", default=None, metavar="S",
                   help="random labeled splits to run (default: every split of each count)")
    p.add_argument("--schedule", default="quality",
                   help="training schedule: smoke, demo, quality, gpu, paper (listed above), or a JSON schedule file "
                        "(default: quality)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available, else CPU")
    p.add_argument("--jobs", type=int, default=1,
                   help="trainings run at once: several fit on one GPU; on the CPU each gets its own share of the "
                        "cores (bound to them, OMP_WAIT_POLICY=PASSIVE)")
    p.add_argument("--workdir", default="spcl_experiment",
                   help="working folder: one dataset and one schedule; nnU-Net's raw/preprocessed folders default "
                        "under it when nnUNet_raw/nnUNet_preprocessed are unset")
    p.add_argument("--folds", type=int, nargs="+", default=None, metavar="F",
                   help="fold numbers to run (default: every fold; or choose by --labeled/--splits)")
    p.add_argument("--shared-pretraining", action="store_true",
                   help="cross-validation folds: one pre-training (fold 0's) for every fold instead of one per fold; "
                        "it sees the other folds' validation images, so the tables say their scores are optimistic")
    p.add_argument("--evaluate", default=None, choices=["test", "validation"],
                   help="test: predict and score the fold table's test scans (results.*); validation: score nnU-Net's "
                        "final validation of each run on its fold's validation scans, no test scan predicted "
                        "(validation_results.*). Default: validation for cross-validation folds ('spcl_nnunet "
                        "folds'), test for the benchmark folds")
    p.add_argument("--pretraining-from", default=None, metavar="DIR",
                   help="take the pre-trainings from DIR (the pretraining/ folder of another experiment, finished "
                        "there) instead of training them in this working folder")
    p.add_argument("--pretrain-only", action="store_true",
                   help="train the pre-trainings the methods need (in this working folder's pretraining/) and stop: "
                        "recipes can then share them through --pretraining-from")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("export-teacher", help="copy a Mean Teacher checkpoint with the teacher as the network "
                                              "(for nnUNetv2_predict -chk)")
    p.add_argument("checkpoint", help="checkpoint_final.pth (or _best/_latest) of a Mean Teacher trainer")
    p.add_argument("-o", default=None, help="output file (default: <checkpoint>_teacher.pth next to it)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export_teacher)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
