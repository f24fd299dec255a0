import os, torch, glob
os.environ.update(nnUNet_raw="/work/main/quality_runs/acdc_semi/nnUNet_raw", nnUNet_preprocessed="/work/main/quality_runs/acdc_semi/nnUNet_preprocessed",
                   nnUNet_results="/tmp/conf_results", nnUNet_extTrainer="/work/runs30/trainers", nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1",
                   SPCL_SCHEDULE="/work/runs30/benchmarks/schedules/acdc_semi_a.json")
if __name__ == "__main__":
    from nnunetv2.run.run_training import get_trainer_from_args
    ck = glob.glob("/work/main/quality_runs/acdc_semi/selection_a/runs/fixmatch/fold_0/*/*/fold_0/checkpoint_final.pth")[0]
    t = get_trainer_from_args("910", "2d", 0, "FixMatchTrainer", device=torch.device("cpu"))
    t.initialize()
    c = torch.load(ck, map_location="cpu", weights_only=False)
    t.unwrapped_network().load_state_dict(c["network_weights"])
    t.teacher.load_state_dict(c["teacher_state"])
    t.get_dataloaders()
    for i in range(2):
        b = next(t.dataloader_unlabeled)
        x = b["data"]
        p = t.weak_view_probabilities(x)
        conf = p.max(1).values
        print("batch", tuple(x.shape), "conf quantiles", [round(float(q), 4) for q in torch.quantile(conf.flatten(), torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99]))])
        print("frac >= .95", float((conf >= .95).float().mean()), ">= .8", float((conf >= .8).float().mean()))
        with torch.no_grad():
            s = torch.softmax(t.unwrapped_network()(x)[0].float(), 1).max(1).values
        print("student conf median", float(s.median()), "frac >=.95", float((s >= .95).float().mean()))
