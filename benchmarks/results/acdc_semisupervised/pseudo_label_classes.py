"""Issue #30 diagnostic: which classes the FixMatch-style pseudo-labels that pass tau = 0.95 belong to
(the verdict's fixmatch runs, setting B, checkpoint_final; 4 unlabeled batches of the pool per split).
Run: PYTHONPATH=/work/runs30 .venv/bin/python benchmarks/results/acdc_semisupervised/pseudo_label_classes.py
(the runs' checkout at 406bb8e; output in pseudo_label_classes.txt). With --student: the median confidence of
the student and of the EMA teacher on pixels they label background / foreground, splits 0, 3 and 5
(output in student_confidence.txt). With --folder length_1000 --folds 0 1 2 3: the length study's runs at 1,000
iterations instead (output in pseudo_label_classes_len1000.txt)."""
import argparse
import glob
import os

import torch

os.environ.update(nnUNet_raw="/work/main/quality_runs/acdc_semi/nnUNet_raw",
                  nnUNet_preprocessed="/work/main/quality_runs/acdc_semi/nnUNet_preprocessed",
                  nnUNet_results="/tmp/diag/results", nnUNet_extTrainer="/work/runs30/trainers", nnUNet_n_proc_DA="0",
                  nnUNet_def_n_proc="1")
# the runs' folder under quality_runs/acdc_semi -> the schedule they trained under
SCHEDULES = {"verdict_b": "acdc_semi_b", "length_1000": "acdc_semi_b_len1000", "length_2000": "acdc_semi_b_len2000"}


def trainer_of(fold: int, folder: str = "verdict_b"):
    """The FixMatchTrainer of ``folder``'s run of ``fold`` with its final student and teacher, loaders ready."""
    from nnunetv2.run.run_training import get_trainer_from_args

    os.environ["SPCL_SCHEDULE"] = f"/work/runs30/benchmarks/schedules/{SCHEDULES[folder]}.json"
    ck = glob.glob(f"/work/main/quality_runs/acdc_semi/{folder}/runs/fixmatch/fold_{fold}/*/*/fold_{fold}/checkpoint_final.pth")[0]
    t = get_trainer_from_args("910", "2d", fold, "FixMatchTrainer", device=torch.device("cpu"))
    t.initialize()
    c = torch.load(ck, map_location="cpu", weights_only=False)
    t.unwrapped_network().load_state_dict(c["network_weights"])
    t.teacher.load_state_dict(c["teacher_state"])
    t.get_dataloaders()
    return t


def student_against_teacher() -> None:
    from spcl_nnunet.training.semisupervised import full_resolution

    for fold in (0, 3, 5):
        t = trainer_of(fold)
        x = torch.cat([next(t.dataloader_unlabeled)["data"] for _ in range(4)])
        with torch.no_grad():
            student = torch.softmax(full_resolution(t.unwrapped_network()(x)).float(), 1)
        for name, p in (("student", student), ("teacher", t.weak_view_probabilities(x))):
            conf, label = p.max(1)
            print(f"split {fold} {name}: median confidence on pixels labeled background {conf[label == 0].median():.3f}, "
                  f"foreground {conf[label > 0].median():.3f}; share >= 0.95 {100 * (conf >= .95).float().mean():.2f} %",
                  flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", action="store_true")
    parser.add_argument("--folder", choices=list(SCHEDULES), default="verdict_b")
    parser.add_argument("--folds", type=int, nargs="+", default=list(range(8)))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.student:
        student_against_teacher()
        raise SystemExit
    tau = 0.95
    total = torch.zeros(4)
    confident = torch.zeros(4)
    for fold in args.folds:
        t = trainer_of(fold, args.folder)
        fold_total, fold_conf, background = torch.zeros(4), torch.zeros(4), []
        for _ in range(4):
            p = t.weak_view_probabilities(next(t.dataloader_unlabeled)["data"])
            conf, label = p.max(1)
            fold_total += torch.bincount(label.flatten(), minlength=4)
            fold_conf += torch.bincount(label[conf >= tau].flatten(), minlength=4)
            background.append(conf[label == 0])
        background = torch.cat(background)
        quantiles = torch.quantile(background, torch.tensor([0.5, 0.99]))
        total += fold_total
        confident += fold_conf
        print(f"split {fold}: pixels >= tau {int(fold_conf.sum())} of {int(fold_total.sum())} "
              f"({100 * fold_conf.sum() / fold_total.sum():.2f} %); pseudo-label classes (0 bg, 1 RV, 2 MYO, 3 LV) "
              f"of all pixels {[round(float(v), 3) for v in fold_total / fold_total.sum()]}, "
              f"of those >= tau {[round(float(v), 3) for v in fold_conf / max(fold_conf.sum(), 1)]}; "
              f"confidence of background pixels: median {quantiles[0]:.3f}, 99th percentile {quantiles[1]:.3f}, "
              f"max {background.max():.3f}", flush=True)
    print(f"all splits: of all pixels {[round(float(v), 3) for v in total / total.sum()]}; "
          f"of those >= tau {[round(float(v), 3) for v in confident / confident.sum()]}")
