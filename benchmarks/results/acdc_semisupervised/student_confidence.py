"""Issue #30 diagnostic: the median confidence of the student and of the EMA teacher on pixels they label
background / foreground (the verdict's fixmatch runs, setting B, splits 0, 3 and 5, checkpoint_final;
4 unlabeled batches of the pool each).
Run: PYTHONPATH=/work/runs30 .venv/bin/python benchmarks/results/acdc_semisupervised/student_confidence.py
(output in student_confidence.txt)."""
import glob
import os

import torch

os.environ.update(nnUNet_raw="/work/main/quality_runs/acdc_semi/nnUNet_raw",
                  nnUNet_preprocessed="/work/main/quality_runs/acdc_semi/nnUNet_preprocessed",
                  nnUNet_results="/tmp/diag/results", nnUNet_extTrainer="/work/runs30/trainers", nnUNet_n_proc_DA="0",
                  nnUNet_def_n_proc="1", SPCL_SCHEDULE="/work/runs30/benchmarks/schedules/acdc_semi_b.json")

if __name__ == "__main__":
    from nnunetv2.run.run_training import get_trainer_from_args

    from spcl_nnunet.training.semisupervised import full_resolution

    torch.set_num_threads(1)
    for fold in (0, 3, 5):
        ck = glob.glob(f"/work/main/quality_runs/acdc_semi/verdict_b/runs/fixmatch/fold_{fold}/*/*/fold_{fold}/checkpoint_final.pth")[0]
        t = get_trainer_from_args("910", "2d", fold, "FixMatchTrainer", device=torch.device("cpu"))
        t.initialize()
        c = torch.load(ck, map_location="cpu", weights_only=False)
        t.unwrapped_network().load_state_dict(c["network_weights"])
        t.teacher.load_state_dict(c["teacher_state"])
        t.get_dataloaders()
        x = torch.cat([next(t.dataloader_unlabeled)["data"] for _ in range(4)])
        with torch.no_grad():
            student = torch.softmax(full_resolution(t.unwrapped_network()(x)).float(), 1)
        for name, p in (("student", student), ("teacher", t.weak_view_probabilities(x))):
            conf, label = p.max(1)
            print(f"split {fold} {name}: median confidence on pixels labeled background {conf[label == 0].median():.3f}, "
                  f"foreground {conf[label > 0].median():.3f}; share >= 0.95 {100 * (conf >= .95).float().mean():.2f} %",
                  flush=True)
